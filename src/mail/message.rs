//! The one shape of every message estgate sends: plain text first and HTML as the preferred
//! alternative (many mail clients show only one of them, so both say everything), with a
//! Message-ID, and bodies that keep links intact.

use lettre::message::header::{ContentTransferEncoding, ContentType};
use lettre::message::{Body, Mailbox, MultiPart, SinglePart};
use lettre::Message;

use super::MailError;
use crate::domain::generate_secret;

pub fn alternatives(
    from: &Mailbox,
    to: Mailbox,
    subject: &str,
    text: String,
    html: String,
) -> Result<Message, MailError> {
    let parts = MultiPart::alternative()
        .singlepart(
            SinglePart::builder()
                .header(ContentType::TEXT_PLAIN)
                .body(body(text)),
        )
        .singlepart(
            SinglePart::builder()
                .header(ContentType::TEXT_HTML)
                .body(body(html)),
        );
    // Some submission relays add no Message-ID, and spam filters count its absence.
    let message_id = format!("<{}@{}>", generate_secret(24).expose(), from.email.domain());
    Ok(Message::builder()
        .message_id(Some(message_id))
        .from(from.clone())
        .to(to)
        .subject(subject)
        .multipart(parts)?)
}

/// Links must arrive as they were written: quoted-printable (lettre's choice for lines of
/// 76 characters or more) breaks a long link into `=`-continued lines and writes `=` as
/// `=3D`, which a raw `.eml` or a client showing the source cannot be copied from. RFC 5322
/// §2.1.1 allows 998 characters a line, so ASCII text with lines up to that length goes out
/// as 7bit; anything else keeps lettre's encoding.
fn body(text: String) -> Body {
    let plain = text.is_ascii()
        && !text.contains(['\0', '\r'])
        && text.split('\n').all(|line| line.len() <= 998);
    if plain {
        Body::dangerous_pre_encoded(
            text.replace('\n', "\r\n").into_bytes(),
            ContentTransferEncoding::SevenBit,
        )
    } else {
        Body::new(text)
    }
}
