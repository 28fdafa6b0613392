//! Fuzz target: the upstream HTTP/1.1 response parser (`relay::h1wire`) must never
//! panic, must never hand out more body than the framing allows, and must decode the
//! same head and body however the bytes are split across reads.
//!
//! Input layout: byte 0 picks the split point, the rest is what the upstream sent.
#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use sluice::relay::h1wire::{parse_head, BodyDecoder, Framing};

type Outcome = Option<(u16, Framing, bool, Vec<u8>, bool, usize)>;

/// Head, then body, fed in the given pieces; `None` on a parse error.
fn run(pieces: &[&[u8]]) -> Outcome {
    let mut buf = BytesMut::new();
    let mut head = None;
    let mut body = Vec::new();
    let mut decoder: Option<BodyDecoder> = None;
    for p in pieces {
        buf.extend_from_slice(p);
        if head.is_none() {
            match parse_head(&mut buf) {
                Ok(Some(h)) => {
                    decoder = Some(BodyDecoder::new(h.framing));
                    head = Some(h);
                }
                Ok(None) => continue,
                Err(_) => return None,
            }
        }
        if let Some(d) = decoder.as_mut() {
            loop {
                match d.decode(&mut buf) {
                    Ok(Some(b)) => body.extend_from_slice(&b),
                    Ok(None) => break,
                    Err(_) => return None,
                }
            }
        }
    }
    let h = head?;
    let mut d = decoder?;
    if let Framing::Length(n) = h.framing {
        assert!(body.len() as u64 <= n);
    }
    let complete = d.is_done() || d.eof().is_ok();
    Some((h.status, h.framing, h.reusable, body, complete, buf.len()))
}

fuzz_target!(|data: &[u8]| {
    let (split, wire) = match data {
        [s, rest @ ..] => (*s as usize, rest),
        _ => return,
    };
    let cut = (split * wire.len() / 255).min(wire.len());
    let (a, b) = wire.split_at(cut);
    let whole = run(&[wire]);
    let split_run = run(&[a, b]);
    assert_eq!(whole, split_run);
});
