//! Validation of fine-tuning files (`purpose=fine-tune`), as OpenAI checks them after upload:
//! JSONL, one training example per line, every line in the same one of OpenAI's formats:
//!
//! - chat (supervised or reinforcement): `{"messages": [{"role", "content", ...}], "tools"?, ...}`
//! - prompt/completion (legacy models): `{"prompt": "...", "completion": "..."}`
//! - preference (DPO): `{"input": {"messages": [...]}, "preferred_output": [...],
//!   "non_preferred_output": [...]}`
//!
//! The first line that breaks the rules is named with why, for the file's `status_details`.

use serde_json::{Map, Value};
use std::io::{BufRead, Read};

/// The longest line read (an example of about two million tokens).
pub const MAX_LINE_BYTES: usize = 8 << 20;

const ROLES: &[&str] = &[
    "system",
    "developer",
    "user",
    "assistant",
    "tool",
    "function",
];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Chat,
    Completion,
    Preference,
}

impl Format {
    fn name(self) -> &'static str {
        match self {
            Format::Chat => "chat (messages)",
            Format::Completion => "prompt/completion",
            Format::Preference => "preference (input, preferred_output, non_preferred_output)",
        }
    }
}

/// `Ok((format, examples))`, or why the file is not a fine-tuning file, naming the first bad
/// line.
pub fn validate(mut input: impl BufRead) -> Result<(Format, u64), String> {
    let mut format = None;
    let mut examples = 0u64;
    let mut line = Vec::new();
    for line_no in 1u64.. {
        line.clear();
        let n = input
            .by_ref()
            .take(MAX_LINE_BYTES as u64 + 1)
            .read_until(b'\n', &mut line)
            .map_err(|e| format!("could not read the file: {e}"))?;
        if n == 0 {
            break;
        }
        if line.len() > MAX_LINE_BYTES && line.last() != Some(&b'\n') {
            return Err(format!(
                "line {line_no} is longer than {MAX_LINE_BYTES} bytes"
            ));
        }
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        let example: Value = serde_json::from_slice(&line)
            .map_err(|e| format!("line {line_no} is not valid JSON ({e})"))?;
        let Value::Object(example) = example else {
            return Err(format!("line {line_no} is not a JSON object"));
        };
        let this = check_example(&example).map_err(|why| format!("line {line_no}: {why}"))?;
        match format {
            None => format = Some(this),
            Some(f) if f != this => {
                return Err(format!(
                    "line {line_no} is in the {} format, but the file began in the {} format; every example must use the same one",
                    this.name(),
                    f.name()
                ))
            }
            Some(_) => {}
        }
        examples += 1;
    }
    match format {
        Some(f) => Ok((f, examples)),
        None => Err("the file holds no training examples".to_owned()),
    }
}

fn check_example(example: &Map<String, Value>) -> Result<Format, String> {
    if example.contains_key("input") || example.contains_key("preferred_output") {
        let input = example
            .get("input")
            .and_then(Value::as_object)
            .ok_or("'input' must be an object with 'messages'")?;
        check_messages(input.get("messages"), "input.messages")?;
        for key in ["preferred_output", "non_preferred_output"] {
            let out = example
                .get(key)
                .and_then(Value::as_array)
                .filter(|a| !a.is_empty())
                .ok_or_else(|| {
                    format!("'{key}' must be a non-empty array of assistant messages")
                })?;
            for (i, m) in out.iter().enumerate() {
                let path = format!("{key}[{i}]");
                check_message(m, &path)?;
                if m.get("role").and_then(Value::as_str) != Some("assistant") {
                    return Err(format!("'{path}.role' must be 'assistant'"));
                }
            }
        }
        return Ok(Format::Preference);
    }
    if example.contains_key("messages") {
        let messages = check_messages(example.get("messages"), "messages")?;
        // Supervised examples are learnt from their assistant messages; reinforcement examples
        // end with the prompt the model answers.
        let last = messages
            .last()
            .and_then(|m| m.get("role"))
            .and_then(Value::as_str);
        let has_assistant = messages
            .iter()
            .any(|m| m.get("role").and_then(Value::as_str) == Some("assistant"));
        if !has_assistant && !matches!(last, Some("user" | "developer")) {
            return Err(
                "'messages' must hold at least one assistant message (or, for reinforcement fine-tuning, end with a user message)"
                    .to_owned(),
            );
        }
        if let Some(tools) = example.get("tools") {
            if !tools.is_array() {
                return Err("'tools' must be an array".to_owned());
            }
        }
        return Ok(Format::Chat);
    }
    if example.contains_key("prompt") || example.contains_key("completion") {
        for key in ["prompt", "completion"] {
            if !example.get(key).is_some_and(Value::is_string) {
                return Err(format!("'{key}' must be a string"));
            }
        }
        return Ok(Format::Completion);
    }
    Err("an example must have 'messages' (chat), 'prompt' and 'completion', or 'input' with 'preferred_output' and 'non_preferred_output' (preference)".to_owned())
}

fn check_messages<'a>(messages: Option<&'a Value>, path: &str) -> Result<&'a Vec<Value>, String> {
    let messages = messages
        .and_then(Value::as_array)
        .filter(|a| !a.is_empty())
        .ok_or_else(|| format!("'{path}' must be a non-empty array"))?;
    for (i, m) in messages.iter().enumerate() {
        check_message(m, &format!("{path}[{i}]"))?;
    }
    Ok(messages)
}

fn check_message(m: &Value, path: &str) -> Result<(), String> {
    let m = m
        .as_object()
        .ok_or_else(|| format!("'{path}' must be an object"))?;
    let role = m
        .get("role")
        .and_then(Value::as_str)
        .ok_or_else(|| format!("'{path}.role' is missing"))?;
    if !ROLES.contains(&role) {
        return Err(format!(
            "'{path}.role' must be one of {} (got '{role}')",
            ROLES.join(", ")
        ));
    }
    let calls = m.contains_key("tool_calls") || m.contains_key("function_call");
    match m.get("content") {
        Some(Value::String(_)) => {}
        Some(Value::Array(parts)) => {
            for (j, p) in parts.iter().enumerate() {
                if !p.get("type").is_some_and(Value::is_string) {
                    return Err(format!(
                        "'{path}.content[{j}]' must be an object with a 'type'"
                    ));
                }
            }
        }
        None | Some(Value::Null) if role == "assistant" && calls => {}
        None => return Err(format!("'{path}.content' is missing")),
        Some(_) => {
            return Err(format!(
                "'{path}.content' must be a string or an array of content parts"
            ))
        }
    }
    if let Some(w) = m.get("weight") {
        if role != "assistant" {
            return Err(format!(
                "'{path}.weight' is only allowed on assistant messages"
            ));
        }
        if !matches!(w.as_u64(), Some(0 | 1)) {
            return Err(format!("'{path}.weight' must be 0 or 1"));
        }
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn v(s: &str) -> Result<(Format, u64), String> {
        validate(std::io::Cursor::new(s.as_bytes().to_vec()))
    }

    #[test]
    fn accepts_openais_formats() {
        let chat = r#"{"messages":[{"role":"system","content":"Be brief."},{"role":"user","content":"Hi"},{"role":"assistant","content":"Hello","weight":1}]}
{"messages":[{"role":"user","content":"2+2?"},{"role":"assistant","content":null,"tool_calls":[{"id":"c","type":"function","function":{"name":"add","arguments":"{}"}}]},{"role":"tool","content":"4","tool_call_id":"c"},{"role":"assistant","content":[{"type":"text","text":"4"}]}],"tools":[]}
"#;
        assert_eq!(v(chat), Ok((Format::Chat, 2)));
        let rft = r#"{"messages":[{"role":"developer","content":"Solve"},{"role":"user","content":"1+1"}],"reference_answer":"2"}"#;
        assert_eq!(v(rft), Ok((Format::Chat, 1)));
        let completion = "{\"prompt\":\"a\",\"completion\":\"b\"}\n\n{\"prompt\":\"c\",\"completion\":\"d\"}\r\n";
        assert_eq!(v(completion), Ok((Format::Completion, 2)));
        let dpo = r#"{"input":{"messages":[{"role":"user","content":"Hi"}]},"preferred_output":[{"role":"assistant","content":"Hello!"}],"non_preferred_output":[{"role":"assistant","content":"What."}]}"#;
        assert_eq!(v(dpo), Ok((Format::Preference, 1)));
    }

    #[test]
    fn names_the_first_bad_line_and_why() {
        let good = r#"{"messages":[{"role":"user","content":"Hi"},{"role":"assistant","content":"Hello"}]}"#;
        let cases = [
            ("", "no training examples"),
            ("not json", "line 1 is not valid JSON"),
            ("[1]", "line 1 is not a JSON object"),
            ("{\"text\":\"hi\"}", "line 1: an example must have"),
            (
                "{\"messages\":[]}",
                "line 1: 'messages' must be a non-empty array",
            ),
            (
                r#"{"messages":[{"role":"bot","content":"x"},{"role":"assistant","content":"y"}]}"#,
                "'messages[0].role' must be one of",
            ),
            (
                r#"{"messages":[{"role":"user"},{"role":"assistant","content":"y"}]}"#,
                "'messages[0].content' is missing",
            ),
            (
                r#"{"messages":[{"role":"user","content":"x"},{"role":"assistant","content":"y","weight":2}]}"#,
                "'messages[1].weight' must be 0 or 1",
            ),
            (
                r#"{"messages":[{"role":"assistant","content":"y"},{"role":"system","content":"x"}]}"#,
                "",
            ),
            (r#"{"prompt":"a"}"#, "'completion' must be a string"),
            (
                r#"{"input":{"messages":[{"role":"user","content":"x"}]},"preferred_output":[{"role":"user","content":"y"}],"non_preferred_output":[{"role":"assistant","content":"z"}]}"#,
                "'preferred_output[0].role' must be 'assistant'",
            ),
        ];
        for (text, want) in cases {
            match v(text) {
                Err(e) => assert!(e.contains(want), "{text}: {e}"),
                Ok(r) => assert!(want.is_empty(), "{text}: accepted as {r:?}"),
            }
        }
        let mixed = format!("{good}\n{good}\n{{\"prompt\":\"a\",\"completion\":\"b\"}}\n");
        let e = v(&mixed).unwrap_err();
        assert!(
            e.starts_with("line 3 is in the prompt/completion format"),
            "{e}"
        );
        let e = v(&format!(
            "{good}\n{{\"messages\":[{{\"role\":\"system\",\"content\":\"x\"}}]}}\n"
        ))
        .unwrap_err();
        assert!(
            e.starts_with("line 2: 'messages' must hold at least one assistant"),
            "{e}"
        );
    }

    #[test]
    fn an_endless_line_is_refused_without_reading_it_all() {
        let input = std::io::Read::chain(
            std::io::Cursor::new(b"{\"prompt\":\"".to_vec()),
            std::io::repeat(b'x'),
        );
        let e = validate(std::io::BufReader::new(input)).unwrap_err();
        assert!(e.contains("line 1 is longer than"), "{e}");
    }
}
