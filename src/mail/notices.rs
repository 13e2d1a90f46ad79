//! The lifecycle notices: an order waits for approval, was approved or rejected, a
//! certificate was issued, revoked, or expires soon. The worker renders each at send time
//! from the rows its outbox entry names (the entry holds no text), so a notice says what is
//! true when it leaves. None carries a secret: they are built from public order and
//! certificate data only, and links point at the enrollment form, where the person signs in.
//!
//! Each notice is a list of blocks rendered twice, as plain text and as HTML, so the two
//! parts cannot drift apart and every value reaches HTML through one escaper.

use lettre::message::Mailbox;
use lettre::Message;
use time::OffsetDateTime;

use super::MailError;
use crate::domain::{
    escape_html, CertificateRecord, Order, Revocation, RevocationReason, UnixTime,
};

/// What one notice is about, with the certificate where it names one.
#[derive(Debug, Clone, Copy)]
pub enum About<'a> {
    /// To an approver.
    ApprovalNeeded,
    /// To the person: a server-made key, collected on the form after the approval.
    OrderApproved,
    OrderRejected,
    CertificateIssued(&'a CertificateRecord),
    CertificateRevoked(&'a CertificateRecord, &'a Revocation),
    ExpiryReminder(&'a CertificateRecord),
}

/// One lifecycle email, from the rows it is rendered from.
pub struct NoticeEmail<'a> {
    pub about: About<'a>,
    pub order: &'a Order,
    /// The enrollment endpoint's name, as its administrator wrote it (untrusted in HTML).
    pub endpoint_name: &'a str,
    /// The enrollment form of the order's account's endpoint: `{public_url}/enroll/{ext}`.
    pub form_url: &'a str,
    pub account_name: &'a str,
    pub profile_name: &'a str,
    /// The person's full name, empty when the order has no person record.
    pub person_name: &'a str,
    /// When the notice is rendered: what "expires in N days" counts from.
    pub now: UnixTime,
}

enum Block {
    Para(String),
    /// Label and value pairs.
    Facts(Vec<(&'static str, String)>),
    /// A button in HTML; the address is written out in both parts.
    Link(&'static str, String),
    /// A command to type, shown as it is.
    Command(String),
}

impl NoticeEmail<'_> {
    pub fn message(&self, from: &Mailbox, to: Mailbox) -> Result<Message, MailError> {
        super::message::alternatives(from, to, &self.subject(), self.text(), self.html())
    }

    pub fn subject(&self) -> String {
        match self.about {
            About::ApprovalNeeded => "A certificate request is waiting for your approval".into(),
            About::OrderApproved => "Your certificate request was approved".into(),
            About::OrderRejected => "Your certificate request was rejected".into(),
            About::CertificateIssued(_) => "Your certificate has been issued".into(),
            About::CertificateRevoked(..) => "Your certificate was revoked".into(),
            About::ExpiryReminder(c) => {
                format!("Your certificate expires on {}", date(c.not_after))
            }
        }
    }

    fn greeting(&self) -> String {
        match self.about {
            // Approvers are not the person the order names.
            About::ApprovalNeeded => "Hello,".into(),
            _ if self.person_name.is_empty() => "Hello,".into(),
            _ => format!("Hello {},", self.person_name),
        }
    }

    fn blocks(&self) -> Vec<Block> {
        let order = self.order;
        let endpoint = self.endpoint_name;
        let profile = self.profile_name;
        let form = || Block::Link("Open the enrollment form", self.form_url.to_string());
        let request = |label: &'static str, at: UnixTime| {
            Block::Facts(vec![
                ("Request number", order.id.to_string()),
                ("Profile", profile.to_string()),
                ("Term", years(order.term_years)),
                (label, date_time(at)),
            ])
        };
        let certificate = |c: &CertificateRecord| {
            vec![
                ("Serial number", c.serial.clone()),
                ("Subject", c.subject.clone()),
                ("Profile", profile.to_string()),
                ("Valid from", date_time(c.not_before)),
                ("Valid until", date_time(c.not_after)),
            ]
        };
        let decision_reason = order.decision.as_ref().and_then(|d| d.reason.as_deref());
        match self.about {
            About::ApprovalNeeded => {
                let requester = if self.person_name.is_empty() {
                    order.requester.clone()
                } else {
                    format!("{} <{}>", self.person_name, order.requester)
                };
                vec![
                    Block::Para(format!(
                        "A certificate request on the enrollment page \"{endpoint}\" is waiting \
                         for an administrator's approval. Nothing is issued until it is approved."
                    )),
                    Block::Facts(vec![
                        ("Request number", order.id.to_string()),
                        ("Requested by", requester),
                        ("Account", self.account_name.to_string()),
                        ("Profile", profile.to_string()),
                        ("Term", years(order.term_years)),
                        ("Key type", order.key_type.clone()),
                        ("Requested on", date_time(order.created_at)),
                    ]),
                    Block::Para("To decide, run one of these on the server:".into()),
                    Block::Command(format!("estgate order approve {}", order.id)),
                    Block::Command(format!(
                        "estgate order reject {} --reason \"why it was rejected\"",
                        order.id
                    )),
                    Block::Para(
                        "The requester is told the decision, and the reason of a rejection. \
                         When several approvers are mailed, the first decision counts."
                            .into(),
                    ),
                ]
            }
            About::OrderApproved => {
                let mut blocks = vec![Block::Para(format!(
                    "Your request for a \"{profile}\" certificate on the enrollment page \
                     \"{endpoint}\" was approved."
                ))];
                if let Some(reason) = decision_reason {
                    blocks.push(Block::Para(format!("The administrator noted: {reason}")));
                }
                blocks.extend([
                    Block::Para(
                        "Your key is made by the server when you collect the certificate. \
                         To collect it, go back to the enrollment form, sign in, and type a \
                         password for the PKCS#12 file (.p12) you then download. You need that \
                         password to import the certificate; it is not stored anywhere, so \
                         keep it safe."
                            .into(),
                    ),
                    form(),
                    request(
                        "Approved on",
                        order.decision.as_ref().map_or(self.now, |d| d.at),
                    ),
                ]);
                blocks
            }
            About::OrderRejected => {
                let decided = order.decision.as_ref().map_or(self.now, |d| d.at);
                vec![
                    Block::Para(format!(
                        "Your request for a \"{profile}\" certificate on the enrollment page \
                         \"{endpoint}\" was rejected by an administrator on {}. \
                         No certificate was issued.",
                        date(decided)
                    )),
                    Block::Para(match decision_reason {
                        Some(reason) => format!("Reason given: {reason}"),
                        None => "No reason was given.".into(),
                    }),
                    Block::Para(
                        "If you think this is a mistake, contact your administrators. \
                         You can make a new request on the enrollment form."
                            .into(),
                    ),
                    form(),
                    request("Requested on", order.created_at),
                ]
            }
            About::CertificateIssued(c) => vec![
                Block::Para(format!(
                    "Your certificate from the enrollment page \"{endpoint}\" has been issued."
                )),
                Block::Facts(certificate(c)),
                Block::Para(
                    "Where to get it: if an EST client made the request, it receives this \
                     certificate the next time it sends the same request. On the enrollment \
                     form, sign in and open \"My certificates\"."
                        .into(),
                ),
                form(),
            ],
            About::CertificateRevoked(c, r) => vec![
                Block::Para(format!(
                    "Your certificate with serial number {} from the enrollment page \
                     \"{endpoint}\" was revoked on {}. Reason: {}.",
                    c.serial,
                    date_time(r.at),
                    reason_label(r.reason)
                )),
                Block::Para(
                    "Programs that check revocation no longer accept it. \
                     If you did not ask for this, contact your administrators."
                        .into(),
                ),
                Block::Facts(vec![
                    ("Serial number", c.serial.clone()),
                    ("Subject", c.subject.clone()),
                    ("Revoked on", date_time(r.at)),
                    ("Reason", reason_label(r.reason).to_string()),
                ]),
                Block::Para("You can request a new certificate on the enrollment form.".into()),
                form(),
            ],
            About::ExpiryReminder(c) => vec![
                Block::Para(format!(
                    "Your certificate with serial number {} from the enrollment page \
                     \"{endpoint}\" expires on {}, {}.",
                    c.serial,
                    date_time(c.not_after),
                    in_days(c.not_after - self.now)
                )),
                Block::Para(
                    "To keep using a certificate after that, request a new one before then \
                     on the enrollment form. An EST client can instead renew it with a \
                     re-enrollment (simplereenroll) while it is still valid."
                        .into(),
                ),
                Block::Link("Renew on the enrollment form", self.form_url.to_string()),
                Block::Facts(certificate(c)),
            ],
        }
    }

    pub fn text(&self) -> String {
        let mut out = format!("{}\n", self.greeting());
        for block in self.blocks() {
            out.push('\n');
            match block {
                Block::Para(p) => out.push_str(&format!("{p}\n")),
                Block::Facts(facts) => {
                    let width = facts.iter().map(|(l, _)| l.len()).max().unwrap_or(0) + 1;
                    for (label, value) in facts {
                        let label = format!("{label}:");
                        out.push_str(&format!("  {label:<width$}  {value}\n"));
                    }
                }
                Block::Link(label, url) => out.push_str(&format!("{label}:\n{url}\n")),
                Block::Command(c) => out.push_str(&format!("    {c}\n")),
            }
        }
        out
    }

    /// Inline styles only: mail clients drop `<style>` blocks and external sheets.
    pub fn html(&self) -> String {
        let mut body = format!("<p>{}</p>\n", escape_html(&self.greeting()));
        for block in self.blocks() {
            match block {
                Block::Para(p) => body.push_str(&format!("<p>{}</p>\n", escape_html(&p))),
                Block::Facts(facts) => {
                    body.push_str(
                        "<table style=\"border-collapse: collapse; margin: 0 0 1em;\">\n",
                    );
                    for (label, value) in facts {
                        body.push_str(&format!(
                            "<tr><th scope=\"row\" style=\"text-align: left; font-weight: normal; \
                             color: #52606d; padding: 2px 16px 2px 0;\">{}</th>\
                             <td style=\"padding: 2px 0;\">{}</td></tr>\n",
                            escape_html(label),
                            escape_html(&value)
                        ));
                    }
                    body.push_str("</table>\n");
                }
                Block::Link(label, url) => {
                    let url = escape_html(&url);
                    body.push_str(&format!(
                        "<p><a href=\"{url}\" style=\"display: inline-block; padding: 10px 20px; \
                         background-color: #1a5fb4; color: #ffffff; text-decoration: none; \
                         border-radius: 4px; font-weight: bold;\">{}</a></p>\n\
                         <p>If the button does not work, copy this address into your browser:<br>\n\
                         <a href=\"{url}\">{url}</a></p>\n",
                        escape_html(label)
                    ));
                }
                Block::Command(c) => body.push_str(&format!(
                    "<pre style=\"background-color: #f0f2f5; padding: 6px 10px; \
                     margin: 0 0 0.5em;\"><code>{}</code></pre>\n",
                    escape_html(&c)
                )),
            }
        }
        format!(
            "<!DOCTYPE html>\n\
             <html lang=\"en\">\n\
             <head><meta charset=\"utf-8\"><title>{subject}</title></head>\n\
             <body style=\"font-family: Arial, Helvetica, sans-serif; color: #1f2933; line-height: 1.5;\">\n\
             {body}\
             </body>\n\
             </html>\n",
            subject = escape_html(&self.subject()),
        )
    }
}

/// The words a person reads for an RFC 5280 CRLReason.
fn reason_label(reason: RevocationReason) -> &'static str {
    match reason {
        RevocationReason::Unspecified => "not specified",
        RevocationReason::KeyCompromise => "the private key may have been compromised",
        RevocationReason::AffiliationChanged => "your affiliation changed",
        RevocationReason::Superseded => "replaced by a newer certificate",
        RevocationReason::CessationOfOperation => "no longer needed",
        RevocationReason::CertificateHold => "put on hold",
        RevocationReason::PrivilegeWithdrawn => "the privilege to hold it was withdrawn",
    }
}

fn years(n: u32) -> String {
    if n == 1 {
        "1 year".into()
    } else {
        format!("{n} years")
    }
}

/// "in 3 days", rounded up, so a reminder sent 29.5 days ahead says 30.
fn in_days(left_secs: i64) -> String {
    match (left_secs + 86_399).div_euclid(86_400) {
        ..=0 => "today".into(),
        1 => "in 1 day".into(),
        n => format!("in {n} days"),
    }
}

/// "14 March 2026", in UTC.
fn date(t: UnixTime) -> String {
    match OffsetDateTime::from_unix_timestamp(t) {
        Ok(d) => format!("{} {} {}", d.day(), d.month(), d.year()),
        Err(_) => format!("{t} (Unix time)"),
    }
}

/// "14 March 2026, 09:30 UTC".
fn date_time(t: UnixTime) -> String {
    match OffsetDateTime::from_unix_timestamp(t) {
        Ok(d) => format!("{}, {:02}:{:02} UTC", date(t), d.hour(), d.minute()),
        Err(_) => date(t),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{CertStatus, Decision, OrderStatus};

    /// 2026-03-14 09:30:00 UTC.
    const T: i64 = 1_773_480_600;
    const FORM: &str = "https://est.example.org/enroll/AbCdEfGhIjKlMnOpQrSt";

    fn order(decision: Option<Decision>) -> Order {
        Order {
            id: 42,
            account_id: 1,
            profile_id: 2,
            person_id: Some(3),
            requester: "alice@example.org".into(),
            key_type: "rsa-2048".into(),
            term_years: 1,
            csr_sha256: "00".repeat(32),
            status: OrderStatus::PendingApproval,
            serial: None,
            created_at: T,
            csr_der: None,
            decision,
        }
    }

    fn certificate() -> CertificateRecord {
        CertificateRecord {
            id: 7,
            order_id: 42,
            serial: "0A1B2C3D4E5F".into(),
            subject: "CN=Alice Example,O=Example".into(),
            not_before: T,
            not_after: T + 365 * 86_400,
            der: vec![0x30, 0x00],
            status: CertStatus::Valid,
            revocation: None,
        }
    }

    fn email<'a>(about: About<'a>, order: &'a Order, endpoint: &'a str) -> NoticeEmail<'a> {
        NoticeEmail {
            about,
            order,
            endpoint_name: endpoint,
            form_url: FORM,
            account_name: "Staff",
            profile_name: "S/MIME",
            person_name: "Alice Example",
            now: T,
        }
    }

    /// Both parts, for sentences every notice must say in each.
    fn parts(e: &NoticeEmail<'_>) -> [String; 2] {
        [e.text(), e.html()]
    }

    fn formatted(e: &NoticeEmail<'_>) -> String {
        let from: Mailbox = "estgate <estgate@example.org>".parse().unwrap();
        let to: Mailbox = "alice@example.org".parse().unwrap();
        String::from_utf8(e.message(&from, to).unwrap().formatted()).unwrap()
    }

    #[test]
    fn dates_are_written_out_in_utc() {
        assert_eq!(date(T), "14 March 2026");
        assert_eq!(date_time(T), "14 March 2026, 09:30 UTC");
        assert_eq!(date_time(T + 86_400 * 300 + 5), "8 January 2027, 09:30 UTC");
        assert_eq!(date(i64::MAX), format!("{} (Unix time)", i64::MAX));
        assert_eq!(in_days(30 * 86_400), "in 30 days");
        assert_eq!(in_days(29 * 86_400 + 1), "in 30 days");
        assert_eq!(in_days(3600), "in 1 day");
        assert_eq!(in_days(0), "today");
    }

    #[test]
    fn approval_needed_tells_the_approver_what_and_how_to_decide() {
        let o = order(None);
        let e = email(About::ApprovalNeeded, &o, "Staff certificates");
        assert_eq!(
            e.subject(),
            "A certificate request is waiting for your approval"
        );
        let text = e.text();
        assert!(text.starts_with("Hello,\n"), "{text}");
        assert!(text.contains(
            "A certificate request on the enrollment page \"Staff certificates\" is waiting \
             for an administrator's approval."
        ));
        assert!(
            text.contains("Requested by:    Alice Example <alice@example.org>\n"),
            "{text}"
        );
        assert!(text.contains("  Request number:  42\n"), "{text}");
        assert!(text.contains("Account:         Staff\n"), "{text}");
        assert!(text.contains("Term:            1 year\n"), "{text}");
        assert!(
            text.contains("Requested on:    14 March 2026, 09:30 UTC\n"),
            "{text}"
        );
        assert!(text.contains("    estgate order approve 42\n"), "{text}");
        assert!(
            text.contains("    estgate order reject 42 --reason"),
            "{text}"
        );
        let html = e.html();
        assert!(
            html.contains("<code>estgate order approve 42</code>"),
            "{html}"
        );
        assert!(
            html.contains("Alice Example &lt;alice@example.org&gt;"),
            "{html}"
        );
    }

    #[test]
    fn approved_sends_the_person_back_to_the_form_for_a_password() {
        let o = order(Some(Decision {
            by: "admin".into(),
            at: T + 3600,
            reason: None,
        }));
        let e = email(About::OrderApproved, &o, "Staff certificates");
        assert_eq!(e.subject(), "Your certificate request was approved");
        for part in parts(&e) {
            assert!(part.contains("Hello Alice Example,"), "{part}");
            assert!(part.contains("was approved."), "{part}");
            assert!(part.contains("go back to the enrollment form, sign in, and type a password"));
            assert!(part.contains("PKCS#12"));
            assert!(part.contains(FORM));
            assert!(part.contains("14 March 2026, 10:30 UTC"), "{part}");
        }
        assert!(!e.text().contains("noted"));
        let html = e.html();
        assert!(
            html.contains(&format!("<a href=\"{FORM}\">{FORM}</a>")),
            "{html}"
        );
        assert!(html.contains(">Open the enrollment form</a>"), "{html}");
    }

    #[test]
    fn rejected_gives_the_decision_reason_or_says_there_was_none() {
        let with = order(Some(Decision {
            by: "admin".into(),
            at: T + 86_400,
            reason: Some("Use the <device> account & retry".into()),
        }));
        let e = email(About::OrderRejected, &with, "Staff certificates");
        assert_eq!(e.subject(), "Your certificate request was rejected");
        let text = e.text();
        assert!(
            text.contains("was rejected by an administrator on 15 March 2026."),
            "{text}"
        );
        assert!(text.contains("No certificate was issued."));
        assert!(
            text.contains("Reason given: Use the <device> account & retry\n"),
            "{text}"
        );
        assert!(text.contains("contact your administrators"));
        let html = e.html();
        assert!(html.contains("Reason given: Use the &lt;device&gt; account &amp; retry"));
        assert!(!html.contains("<device>"));

        let without = order(Some(Decision {
            by: "admin".into(),
            at: T,
            reason: None,
        }));
        let e = email(About::OrderRejected, &without, "Staff certificates");
        assert!(e.text().contains("No reason was given."));
    }

    #[test]
    fn issued_names_the_certificate_and_where_to_get_it() {
        let o = order(None);
        let c = certificate();
        let e = email(About::CertificateIssued(&c), &o, "Staff certificates");
        assert_eq!(e.subject(), "Your certificate has been issued");
        let text = e.text();
        assert!(text.contains("Serial number:  0A1B2C3D4E5F\n"), "{text}");
        assert!(
            text.contains("Subject:        CN=Alice Example,O=Example\n"),
            "{text}"
        );
        assert!(
            text.contains("Valid from:     14 March 2026, 09:30 UTC\n"),
            "{text}"
        );
        assert!(
            text.contains("Valid until:    14 March 2027, 09:30 UTC\n"),
            "{text}"
        );
        for part in parts(&e) {
            assert!(part.contains("if an EST client made the request, it receives this"));
            assert!(part.contains("My certificates"));
            assert!(part.contains(FORM));
        }
    }

    #[test]
    fn revoked_gives_serial_reason_and_time_and_who_to_ask() {
        let o = order(None);
        let c = certificate();
        let r = Revocation {
            at: T + 86_400 * 10,
            reason: RevocationReason::KeyCompromise,
            by: "admin".into(),
        };
        let e = email(About::CertificateRevoked(&c, &r), &o, "Staff certificates");
        assert_eq!(e.subject(), "Your certificate was revoked");
        let text = e.text();
        assert!(
            text.contains(
                "Your certificate with serial number 0A1B2C3D4E5F from the enrollment page \
             \"Staff certificates\" was revoked on 24 March 2026, 09:30 UTC. \
             Reason: the private key may have been compromised."
            ),
            "{text}"
        );
        for part in parts(&e) {
            assert!(part.contains("If you did not ask for this, contact your administrators."));
        }
        assert!(!text.contains("admin\n"), "who revoked it is not said");
    }

    #[test]
    fn expiry_reminder_gives_the_date_and_a_renewal_link() {
        let o = order(None);
        let c = certificate();
        let mut e = email(About::ExpiryReminder(&c), &o, "Staff certificates");
        e.now = c.not_after - 30 * 86_400 + 600;
        assert_eq!(e.subject(), "Your certificate expires on 14 March 2027");
        let text = e.text();
        assert!(
            text.contains(
                "Your certificate with serial number 0A1B2C3D4E5F from the enrollment page \
             \"Staff certificates\" expires on 14 March 2027, 09:30 UTC, in 30 days."
            ),
            "{text}"
        );
        assert!(
            text.contains(&format!("Renew on the enrollment form:\n{FORM}\n")),
            "{text}"
        );
        assert!(e.html().contains(">Renew on the enrollment form</a>"));
    }

    #[test]
    fn every_notice_escapes_the_endpoint_name_in_html() {
        let o = order(Some(Decision {
            by: "admin".into(),
            at: T,
            reason: None,
        }));
        let c = certificate();
        let r = Revocation {
            at: T,
            reason: RevocationReason::Superseded,
            by: "admin".into(),
        };
        for about in [
            About::ApprovalNeeded,
            About::OrderApproved,
            About::OrderRejected,
            About::CertificateIssued(&c),
            About::CertificateRevoked(&c, &r),
            About::ExpiryReminder(&c),
        ] {
            let e = email(about, &o, "<b>R&D</b>");
            let html = e.html();
            assert!(
                html.contains("&quot;&lt;b&gt;R&amp;D&lt;/b&gt;&quot;"),
                "{html}"
            );
            assert!(!html.contains("<b>"), "{html}");
            // The plain text shows the name as written.
            assert!(e.text().contains("\"<b>R&D</b>\""));
        }
    }

    #[test]
    fn message_has_the_subject_both_parts_and_no_order_internals() {
        let o = order(None);
        let c = certificate();
        let eml = formatted(&email(About::CertificateIssued(&c), &o, "Staff"));
        assert!(
            eml.contains("Subject: Your certificate has been issued\r\n"),
            "{eml}"
        );
        assert!(eml.contains("multipart/alternative"), "{eml}");
        let plain = eml.find("Content-Type: text/plain").unwrap();
        let html = eml.find("Content-Type: text/html").unwrap();
        assert!(plain < html, "plain text first, the preferred part last");
        assert_eq!(eml[plain..html].matches(FORM).count(), 1, "{eml}");
        assert!(!eml.contains(&o.csr_sha256), "{eml}");
    }
}
