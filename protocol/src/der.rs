//! A minimal DER writer (definite lengths) and reader for the few structures built here.

use crate::Error;

pub const SEQUENCE: u8 = 0x30;
pub const SET: u8 = 0x31;
pub const INTEGER: u8 = 0x02;

pub fn tlv(tag: u8, content: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(content.len() + 6);
    out.push(tag);
    let n = content.len();
    if n < 0x80 {
        out.push(n as u8);
    } else {
        let bytes = n.to_be_bytes();
        let skip = bytes.iter().take_while(|b| **b == 0).count();
        out.push(0x80 | (bytes.len() - skip) as u8);
        out.extend_from_slice(&bytes[skip..]);
    }
    out.extend_from_slice(content);
    out
}

pub fn seq(parts: &[&[u8]]) -> Vec<u8> {
    tlv(SEQUENCE, &parts.concat())
}

pub fn integer(v: u32) -> Vec<u8> {
    let bytes = v.to_be_bytes();
    let mut start = bytes.iter().take_while(|b| **b == 0).count().min(3);
    // Keep a leading zero when the high bit would make the value negative.
    if bytes[start] & 0x80 != 0 && start > 0 {
        start -= 1;
    }
    tlv(INTEGER, &bytes[start..])
}

/// Splits one TLV off the front: (tag, content, rest).
pub fn read(input: &[u8]) -> Result<(u8, &[u8], &[u8]), Error> {
    let err = |m: &str| Error::Der(m.to_string());
    let (&tag, rest) = input.split_first().ok_or_else(|| err("unexpected end"))?;
    let (&first, rest) = rest.split_first().ok_or_else(|| err("missing length"))?;
    let (len, rest) = if first < 0x80 {
        (first as usize, rest)
    } else {
        let n = (first & 0x7f) as usize;
        if n == 0 || n > 4 || rest.len() < n {
            return Err(err("bad length"));
        }
        let len = rest[..n].iter().fold(0usize, |a, b| (a << 8) | *b as usize);
        (len, &rest[n..])
    };
    if rest.len() < len {
        return Err(err("truncated"));
    }
    Ok((tag, &rest[..len], &rest[len..]))
}

/// Reads one TLV whose tag must be `want`.
pub fn expect(input: &[u8], want: u8) -> Result<(&[u8], &[u8]), Error> {
    let (tag, content, rest) = read(input)?;
    if tag != want {
        return Err(Error::Der(format!(
            "expected tag {want:#04x}, found {tag:#04x}"
        )));
    }
    Ok((content, rest))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_lengths_round_trip() {
        let content = vec![7u8; 300];
        let enc = tlv(0x04, &content);
        assert_eq!(&enc[..4], &[0x04, 0x82, 0x01, 0x2c]);
        let (tag, c, rest) = read(&enc).unwrap();
        assert_eq!((tag, c.len(), rest.len()), (0x04, 300, 0));
    }

    #[test]
    fn integers_are_minimal_and_positive() {
        assert_eq!(integer(2048), vec![0x02, 0x02, 0x08, 0x00]);
        assert_eq!(integer(128), vec![0x02, 0x02, 0x00, 0x80]);
        assert_eq!(integer(0), vec![0x02, 0x01, 0x00]);
    }

    #[test]
    fn truncated_input_is_an_error() {
        assert!(read(&[0x30, 0x05, 0x01]).is_err());
        assert!(read(&[]).is_err());
    }
}
