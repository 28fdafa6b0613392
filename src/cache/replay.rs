//! Replaying a cached (non-streaming) Messages answer as the SSE event sequence the API
//! would have streamed, so SDKs that asked for `stream: true` accept it.

use serde_json::{json, Value};

/// The SSE bytes for a message JSON, or `None` if it is not a message.
pub fn message_to_sse(body: &[u8]) -> Option<Vec<u8>> {
    let msg: Value = serde_json::from_slice(body).ok()?;
    if msg.get("type")?.as_str()? != "message" {
        return None;
    }
    let mut out = Vec::with_capacity(body.len() * 2);
    let mut event = |name: &str, data: &Value| {
        out.extend_from_slice(b"event: ");
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(b"\ndata: ");
        out.extend_from_slice(data.to_string().as_bytes());
        out.extend_from_slice(b"\n\n");
    };
    let usage = msg.get("usage").cloned().unwrap_or(json!({}));
    let mut start = msg.clone();
    if let Some(o) = start.as_object_mut() {
        o.insert("content".into(), json!([]));
        o.insert("stop_reason".into(), Value::Null);
        o.insert("stop_sequence".into(), Value::Null);
        let mut u = usage.clone();
        if let Some(uo) = u.as_object_mut() {
            uo.insert("output_tokens".into(), json!(1));
        }
        o.insert("usage".into(), u);
    }
    event(
        "message_start",
        &json!({"type": "message_start", "message": start}),
    );
    let blocks = msg
        .get("content")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    for (i, b) in blocks.iter().enumerate() {
        let kind = b.get("type").and_then(Value::as_str).unwrap_or("");
        match kind {
            "text" => {
                event(
                    "content_block_start",
                    &json!({"type":"content_block_start","index":i,"content_block":{"type":"text","text":""}}),
                );
                let text = b.get("text").and_then(Value::as_str).unwrap_or("");
                event(
                    "content_block_delta",
                    &json!({"type":"content_block_delta","index":i,"delta":{"type":"text_delta","text":text}}),
                );
            }
            "tool_use" => {
                let mut start_block = b.clone();
                if let Some(o) = start_block.as_object_mut() {
                    o.insert("input".into(), json!({}));
                }
                event(
                    "content_block_start",
                    &json!({"type":"content_block_start","index":i,"content_block":start_block}),
                );
                let input = b.get("input").cloned().unwrap_or(json!({})).to_string();
                event(
                    "content_block_delta",
                    &json!({"type":"content_block_delta","index":i,"delta":{"type":"input_json_delta","partial_json":input}}),
                );
            }
            "thinking" => {
                event(
                    "content_block_start",
                    &json!({"type":"content_block_start","index":i,"content_block":{"type":"thinking","thinking":""}}),
                );
                let t = b.get("thinking").and_then(Value::as_str).unwrap_or("");
                event(
                    "content_block_delta",
                    &json!({"type":"content_block_delta","index":i,"delta":{"type":"thinking_delta","thinking":t}}),
                );
                if let Some(sig) = b.get("signature").and_then(Value::as_str) {
                    event(
                        "content_block_delta",
                        &json!({"type":"content_block_delta","index":i,"delta":{"type":"signature_delta","signature":sig}}),
                    );
                }
            }
            _ => {
                event(
                    "content_block_start",
                    &json!({"type":"content_block_start","index":i,"content_block":b}),
                );
            }
        }
        event(
            "content_block_stop",
            &json!({"type":"content_block_stop","index":i}),
        );
    }
    event(
        "message_delta",
        &json!({"type":"message_delta",
            "delta":{"stop_reason": msg.get("stop_reason").cloned().unwrap_or(Value::Null),
                     "stop_sequence": msg.get("stop_sequence").cloned().unwrap_or(Value::Null)},
            "usage":{"output_tokens": usage.get("output_tokens").cloned().unwrap_or(json!(0))}}),
    );
    event("message_stop", &json!({"type":"message_stop"}));
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replay_is_a_complete_valid_stream() {
        let body = br#"{"id":"msg_1","type":"message","role":"assistant","model":"claude-x","content":[{"type":"text","text":"Hello \"world\" \u4f60\u597d"},{"type":"tool_use","id":"tu_1","name":"calc","input":{"a":1}}],"stop_reason":"tool_use","stop_sequence":null,"usage":{"input_tokens":10,"output_tokens":7}}"#;
        let sse = message_to_sse(body).unwrap();
        let mut p = crate::sse::SseParser::new();
        let mut u = crate::usage::StreamUsage::default();
        let mut names = vec![];
        let mut text = String::new();
        p.feed(&sse, |e| {
            u.observe(e);
            names.push(e.event.to_string());
            let v: Value = serde_json::from_slice(e.data).unwrap();
            if let Some(t) = v["delta"]["text"].as_str() {
                text.push_str(t);
            }
        });
        assert_eq!(names.first().map(String::as_str), Some("message_start"));
        assert_eq!(names.last().map(String::as_str), Some("message_stop"));
        assert!(u.completed());
        assert_eq!(u.usage().input_tokens, 10);
        assert_eq!(u.usage().output_tokens, 7);
        assert_eq!(text, "Hello \"world\" 你好");
        assert!(message_to_sse(br#"{"input_tokens":3}"#).is_none());
    }
}
