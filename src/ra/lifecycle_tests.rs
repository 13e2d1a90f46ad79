//! RA tests of the certificate lifecycle (approval, revocation).
