//! Test support: an SMTP receiver on 127.0.0.1:0 that speaks just enough SMTP (RFC 5321,
//! STARTTLS per RFC 3207) for lettre's client, and keeps what it was sent.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;

/// One message as the receiver saw it.
#[derive(Debug, Clone)]
pub struct Received {
    pub mail_from: String,
    pub rcpt_to: Vec<String>,
    /// The message after dot-unstuffing, CRLF line ends kept.
    pub data: String,
    /// Whether the session that carried it was encrypted.
    pub encrypted: bool,
}

#[derive(Default)]
struct Log {
    accepted: Vec<Received>,
    refused: Vec<Received>,
    refuse_next: usize,
}

/// How the receiver protects its sessions.
#[derive(Clone)]
pub enum Security {
    Plain,
    /// Offers STARTTLS after EHLO.
    StartTls(TlsAcceptor),
}

pub struct Receiver {
    pub addr: SocketAddr,
    log: Arc<Mutex<Log>>,
    task: tokio::task::JoinHandle<()>,
}

impl Receiver {
    /// A plain-SMTP receiver that answers the end of the first `refuse` messages with `451`
    /// (try again later), quoting the message's link line back the way a chatty relay might.
    pub async fn start(refuse: usize) -> Receiver {
        Receiver::start_with(refuse, Security::Plain).await
    }

    pub async fn start_with(refuse: usize, security: Security) -> Receiver {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let log = Arc::new(Mutex::new(Log {
            refuse_next: refuse,
            ..Log::default()
        }));
        let shared = log.clone();
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                tokio::spawn(session(stream, shared.clone(), security.clone()));
            }
        });
        Receiver { addr, log, task }
    }

    pub fn accepted(&self) -> Vec<Received> {
        self.log.lock().unwrap().accepted.clone()
    }

    pub fn refused(&self) -> Vec<Received> {
        self.log.lock().unwrap().refused.clone()
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn session(stream: TcpStream, log: Arc<Mutex<Log>>, security: Security) {
    let mut lines = BufReader::new(stream);
    if lines
        .get_mut()
        .write_all(b"220 receiver.test ESMTP\r\n")
        .await
        .is_err()
    {
        return;
    }
    match security {
        Security::Plain => {
            let _ = conversation(&mut lines, &log, false, false).await;
        }
        Security::StartTls(acceptor) => {
            if conversation(&mut lines, &log, true, false).await != End::StartTls {
                return;
            }
            // The client waits for our 220 before its ClientHello, so nothing is buffered.
            let Ok(tls) = acceptor.accept(lines.into_inner()).await else {
                return;
            };
            let _ = conversation(&mut BufReader::new(tls), &log, false, true).await;
        }
    }
}

#[derive(Debug, PartialEq, Eq)]
enum End {
    Closed,
    StartTls,
}

/// Commands until QUIT, a closed connection, or (when offered) STARTTLS.
async fn conversation<S: AsyncRead + AsyncWrite + Unpin>(
    lines: &mut BufReader<S>,
    log: &Mutex<Log>,
    offer_starttls: bool,
    encrypted: bool,
) -> End {
    let mut mail_from = String::new();
    let mut rcpt_to = Vec::new();
    loop {
        let Some(command) = read_line(lines).await else {
            return End::Closed;
        };
        let command = command.trim_end().to_string();
        let verb = command
            .split([' ', ':'])
            .next()
            .unwrap_or("")
            .to_ascii_uppercase();
        let out = match verb.as_str() {
            "EHLO" if offer_starttls => {
                b"250-receiver.test\r\n250-8BITMIME\r\n250 STARTTLS\r\n".to_vec()
            }
            "EHLO" => b"250-receiver.test\r\n250 8BITMIME\r\n".to_vec(),
            "STARTTLS" if offer_starttls => {
                if lines
                    .get_mut()
                    .write_all(b"220 go ahead\r\n")
                    .await
                    .is_err()
                {
                    return End::Closed;
                }
                return End::StartTls;
            }
            "HELO" | "NOOP" => reply("250 OK"),
            "RSET" => {
                mail_from.clear();
                rcpt_to.clear();
                reply("250 OK")
            }
            "MAIL" => {
                mail_from = address(&command);
                reply("250 OK")
            }
            "RCPT" => {
                rcpt_to.push(address(&command));
                reply("250 OK")
            }
            "DATA" => {
                if lines
                    .get_mut()
                    .write_all(b"354 end with <CRLF>.<CRLF>\r\n")
                    .await
                    .is_err()
                {
                    return End::Closed;
                }
                let mut data = String::new();
                loop {
                    let Some(l) = read_line(lines).await else {
                        return End::Closed;
                    };
                    if l == ".\r\n" {
                        break;
                    }
                    // RFC 5321 §4.5.2: a leading dot was doubled by the client.
                    data.push_str(l.strip_prefix('.').unwrap_or(&l));
                }
                let received = Received {
                    mail_from: std::mem::take(&mut mail_from),
                    rcpt_to: std::mem::take(&mut rcpt_to),
                    data,
                    encrypted,
                };
                end_of_data(log, received)
            }
            "QUIT" => {
                let _ = lines.get_mut().write_all(b"221 bye\r\n").await;
                return End::Closed;
            }
            _ => reply("502 5.5.2 command not recognised"),
        };
        if lines.get_mut().write_all(&out).await.is_err() {
            return End::Closed;
        }
    }
}

/// Keeps the message and answers: refused (451, quoting its link line) or queued.
fn end_of_data(log: &Mutex<Log>, received: Received) -> Vec<u8> {
    let mut log = log.lock().unwrap();
    if log.refuse_next > 0 {
        log.refuse_next -= 1;
        let quoted = received
            .data
            .lines()
            .find(|l| l.contains("token="))
            .unwrap_or("")
            .to_string();
        log.refused.push(received);
        reply(&format!("451 4.3.0 try again later, got {quoted}"))
    } else {
        log.accepted.push(received);
        reply("250 2.0.0 queued")
    }
}

async fn read_line<S: AsyncRead + Unpin>(lines: &mut BufReader<S>) -> Option<String> {
    let mut line = String::new();
    match lines.read_line(&mut line).await {
        Ok(0) | Err(_) => None,
        Ok(_) => Some(line),
    }
}

fn reply(text: &str) -> Vec<u8> {
    format!("{text}\r\n").into_bytes()
}

/// The address between `<` and `>` of a MAIL or RCPT command.
fn address(command: &str) -> String {
    let start = command.find('<').map(|i| i + 1).unwrap_or(0);
    let end = command.rfind('>').unwrap_or(command.len());
    command[start..end].to_string()
}
