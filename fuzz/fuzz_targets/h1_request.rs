//! Fuzz target: the client HTTP/1.1 request parser (`downstream::wire`) must never
//! panic, must take pipelined requests off one at a time, and must give the same
//! requests (method, target, headers, framing) however the bytes are split.
//!
//! Input layout: byte 0 picks the split point, the rest is what the client sent.
#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use sluice::downstream::wire::{parse_request, BodyDecoder, Framing};

/// Each request's (method, target, headers, framing, keep-alive, body) until an error
/// or the input runs out; whether parsing stopped on an error.
type Outcome = (Vec<(String, String, Vec<(String, Vec<u8>)>, Framing, bool, Vec<u8>)>, bool);

fn run(pieces: &[&[u8]]) -> Outcome {
    let mut buf = BytesMut::new();
    let mut out = Vec::new();
    let mut current: Option<(usize, BodyDecoder)> = None;
    for p in pieces {
        buf.extend_from_slice(p);
        loop {
            if current.is_none() {
                match parse_request(&mut buf) {
                    Ok(Some(h)) => {
                        assert!(!matches!(h.body, Framing::UntilClose), "requests never read to close");
                        let headers = h
                            .parts
                            .headers
                            .iter()
                            .map(|(k, v)| (k.as_str().to_string(), v.as_bytes().to_vec()))
                            .collect();
                        out.push((
                            h.parts.method.to_string(),
                            h.parts.uri.to_string(),
                            headers,
                            h.body,
                            h.keep_alive,
                            Vec::new(),
                        ));
                        current = Some((out.len() - 1, BodyDecoder::new(h.body)));
                    }
                    Ok(None) => break,
                    Err(_) => return (out, true),
                }
            }
            let Some((i, d)) = current.as_mut() else { break };
            loop {
                match d.decode(&mut buf) {
                    Ok(Some(b)) => out[*i].5.extend_from_slice(&b),
                    Ok(None) => break,
                    Err(_) => return (out, true),
                }
            }
            if let Framing::Length(n) = out[*i].3 {
                assert!(out[*i].5.len() as u64 <= n);
            }
            if d.is_done() {
                current = None;
            } else {
                break;
            }
        }
    }
    (out, false)
}

fuzz_target!(|data: &[u8]| {
    let (split, wire) = match data {
        [s, rest @ ..] => (*s as usize, rest),
        _ => return,
    };
    let cut = (split * wire.len() / 255).min(wire.len());
    let (a, b) = wire.split_at(cut);
    assert_eq!(run(&[wire]), run(&[a, b]));
});
