//! The email-confirmation message: one link, for signing in to an enrollment page or for
//! confirming a certificate request an EST client made. Plain text and HTML alternatives,
//! both with the link written out, since many mail clients show only one of them.

use lettre::message::Mailbox;
use lettre::Message;

use super::MailError;
use crate::domain::{escape_html, EmailPurpose};

pub const SUBJECT: &str = "Your Email Confirmation Request";

/// What one confirmation email says.
pub struct Confirmation<'a> {
    /// The enrollment endpoint's name, as its administrator wrote it (untrusted in HTML).
    pub endpoint_name: &'a str,
    pub link: &'a str,
    pub purpose: EmailPurpose,
    pub valid_minutes: i64,
}

impl Confirmation<'_> {
    pub fn message(&self, from: &Mailbox, to: Mailbox) -> Result<Message, MailError> {
        super::message::alternatives(from, to, SUBJECT, self.text(), self.html())
    }

    fn request_sentence(&self) -> &'static str {
        match self.purpose {
            EmailPurpose::SignIn => {
                "Someone asked to sign in with this email address. \
                 Follow the link to confirm the address and continue to the enrollment form."
            }
            EmailPurpose::Est => {
                "Your EST client made a certificate request for this email address. \
                 Following the link confirms that certificate request; \
                 your client then receives the certificate when it asks again."
            }
        }
    }

    fn button_label(&self) -> &'static str {
        match self.purpose {
            EmailPurpose::SignIn => "Confirm my email address",
            EmailPurpose::Est => "Confirm the certificate request",
        }
    }

    pub fn text(&self) -> String {
        format!(
            "Hello,\n\
             \n\
             the enrollment page \"{name}\" received a request to confirm this email address.\n\
             {request}\n\
             \n\
             {link}\n\
             \n\
             The link is valid for {minutes} minutes and can be used once.\n\
             \n\
             If you did not ask for this, ignore this email: nothing happens without the link.\n",
            name = self.endpoint_name,
            request = self.request_sentence(),
            link = self.link,
            minutes = self.valid_minutes,
        )
    }

    /// Inline styles only: mail clients drop `<style>` blocks and external sheets.
    pub fn html(&self) -> String {
        let link = escape_html(self.link);
        format!(
            "<!DOCTYPE html>\n\
             <html lang=\"en\">\n\
             <head><meta charset=\"utf-8\"><title>{subject}</title></head>\n\
             <body style=\"font-family: Arial, Helvetica, sans-serif; color: #1f2933; line-height: 1.5;\">\n\
             <p>Hello,</p>\n\
             <p>the enrollment page <strong>{name}</strong> received a request to confirm this email address.</p>\n\
             <p>{request}</p>\n\
             <p><a href=\"{link}\" style=\"display: inline-block; padding: 10px 20px; \
             background-color: #1a5fb4; color: #ffffff; text-decoration: none; \
             border-radius: 4px; font-weight: bold;\">{button}</a></p>\n\
             <p>If the button does not work, copy this link into your browser:<br>\n\
             <a href=\"{link}\">{link}</a></p>\n\
             <p>The link is valid for {minutes} minutes and can be used once.</p>\n\
             <p>If you did not ask for this, ignore this email: nothing happens without the link.</p>\n\
             </body>\n\
             </html>\n",
            subject = escape_html(SUBJECT),
            name = escape_html(self.endpoint_name),
            request = escape_html(self.request_sentence()),
            button = escape_html(self.button_label()),
            minutes = self.valid_minutes,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LINK: &str =
        "https://est.example.org/enroll/AbCdEfGhIjKlMnOpQrSt/confirm?token=0123456789abcdefABCDEF0123456789";

    fn confirmation(name: &str, purpose: EmailPurpose) -> Confirmation<'_> {
        Confirmation {
            endpoint_name: name,
            link: LINK,
            purpose,
            valid_minutes: 45,
        }
    }

    fn formatted(c: &Confirmation<'_>) -> String {
        let from: Mailbox = "estgate <estgate@example.org>".parse().unwrap();
        let to: Mailbox = "alice@example.org".parse().unwrap();
        String::from_utf8(c.message(&from, to).unwrap().formatted()).unwrap()
    }

    #[test]
    fn message_has_subject_both_parts_and_the_link_in_each() {
        let eml = formatted(&confirmation("Staff certificates", EmailPurpose::SignIn));
        assert!(eml.contains(&format!("Subject: {SUBJECT}\r\n")), "{eml}");
        assert!(eml.contains("To: alice@example.org\r\n"), "{eml}");
        assert!(eml.contains("Message-ID: <"), "{eml}");
        assert!(eml.contains("@example.org>\r\n"), "{eml}");
        assert!(eml.contains("multipart/alternative"), "{eml}");
        let plain = eml.find("Content-Type: text/plain").unwrap();
        let html = eml.find("Content-Type: text/html").unwrap();
        assert!(
            plain < html,
            "plain text comes first, the preferred part last"
        );
        // The link, unbroken, in the plain part and (twice: button and written out) in HTML.
        assert_eq!(eml[plain..html].matches(LINK).count(), 1, "{eml}");
        assert_eq!(eml[html..].matches(LINK).count(), 3, "{eml}");
        assert!(eml.contains("Content-Transfer-Encoding: 7bit"), "{eml}");
        assert!(eml.contains("valid for 45 minutes and can be used once"));
        assert!(eml.contains("If you did not ask for this, ignore this email"));
        assert!(eml.contains("\"Staff certificates\""));
    }

    #[test]
    fn html_escapes_the_endpoint_name() {
        let c = confirmation("R&D <Lab> \"x\"", EmailPurpose::SignIn);
        let html = c.html();
        assert!(
            html.contains("<strong>R&amp;D &lt;Lab&gt; &quot;x&quot;</strong>"),
            "{html}"
        );
        assert!(!html.contains("<Lab>"));
        // The plain text shows the name as written.
        assert!(c.text().contains("\"R&D <Lab> \"x\"\""));
        assert!(html.contains(&format!("<a href=\"{LINK}\">{LINK}</a>")));
    }

    #[test]
    fn est_purpose_says_it_confirms_the_certificate_request() {
        let c = confirmation("Devices", EmailPurpose::Est);
        for part in [c.text(), c.html()] {
            assert!(part.contains("Your EST client made a certificate request"));
            assert!(part.contains("confirms that certificate request"));
        }
        assert!(c.html().contains(">Confirm the certificate request</a>"));
        let sign_in = confirmation("Devices", EmailPurpose::SignIn);
        assert!(!sign_in.text().contains("EST client"));
    }

    #[test]
    fn non_ascii_text_keeps_an_encoding_that_carries_it() {
        let eml = formatted(&confirmation("Forschung München", EmailPurpose::SignIn));
        assert!(!eml.contains("Content-Transfer-Encoding: 7bit"), "{eml}");
        assert!(eml.is_ascii(), "non-ASCII text is transfer-encoded");
    }
}
