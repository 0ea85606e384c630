//! Reading JSON values while tracking the JSON path, so structural errors say where they are
//! (`$.messages[2].content: expected a string`), and syntax errors with line and column.

use serde_json::{Map, Value};

/// A problem at a place inside one file; the caller adds the file path.
#[derive(Debug, Clone, PartialEq)]
pub struct Problem {
    /// e.g. `line 3, column 7: ` or `$.messages[2].content: `.
    pub place: String,
    pub message: String,
}

impl Problem {
    pub fn at(place: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            place: place.into(),
            message: message.into(),
        }
    }

    /// Prefix the place with a line number (for JSONL), keeping any JSON path after it.
    pub fn on_line(mut self, line: usize) -> Self {
        self.place = format!("line {line}: {}", self.place);
        self
    }
}

/// Parse JSON text; a syntax error gives its line and column.
pub fn parse(text: &str) -> Result<Value, Problem> {
    serde_json::from_str(text).map_err(|e| syntax_problem(&e))
}

/// A serde_json error as a [`Problem`] whose place is its line and column.
pub fn syntax_problem(e: &serde_json::Error) -> Problem {
    let full = e.to_string();
    let suffix = format!(" at line {} column {}", e.line(), e.column());
    let message = full.strip_suffix(&suffix).unwrap_or(&full).to_string();
    Problem::at(
        format!("line {}, column {}: ", e.line(), e.column()),
        message,
    )
}

/// A JSON value together with its path from the document root.
#[derive(Clone, Debug)]
pub struct Node<'a> {
    pub value: &'a Value,
    path: String,
}

impl<'a> Node<'a> {
    pub fn root(value: &'a Value) -> Self {
        Self {
            value,
            path: "$".into(),
        }
    }

    /// The JSON path of this node, e.g. `$.messages[2]`.
    pub fn path(&self) -> &str {
        &self.path
    }

    /// The child at `key`, if present (a missing key and a non-object both give `None`).
    pub fn get(&self, key: &str) -> Option<Node<'a>> {
        let value = self.value.get(key)?;
        let path = if is_identifier(key) {
            format!("{}.{key}", self.path)
        } else {
            format!("{}[{}]", self.path, Value::String(key.to_string()))
        };
        Some(Node { value, path })
    }

    /// The child at `key`, or a problem naming it when missing.
    pub fn require(&self, key: &str) -> Result<Node<'a>, Problem> {
        self.object()?;
        self.get(key)
            .ok_or_else(|| self.problem(format!("missing field \"{key}\"")))
    }

    /// The elements of an array, each with its path.
    pub fn items(&self) -> Result<Vec<Node<'a>>, Problem> {
        Ok(self
            .array()?
            .iter()
            .enumerate()
            .map(|(i, value)| Node {
                value,
                path: format!("{}[{i}]", self.path),
            })
            .collect())
    }

    pub fn problem(&self, message: impl Into<String>) -> Problem {
        Problem::at(format!("{}: ", self.path), message)
    }

    pub fn object(&self) -> Result<&'a Map<String, Value>, Problem> {
        self.value
            .as_object()
            .ok_or_else(|| self.problem(format!("expected an object, found {}", kind(self.value))))
    }

    pub fn array(&self) -> Result<&'a Vec<Value>, Problem> {
        self.value
            .as_array()
            .ok_or_else(|| self.problem(format!("expected an array, found {}", kind(self.value))))
    }

    pub fn str(&self) -> Result<&'a str, Problem> {
        self.value
            .as_str()
            .ok_or_else(|| self.problem(format!("expected a string, found {}", kind(self.value))))
    }

    /// A number; `null` is `None` (undefined metrics are written as null).
    pub fn opt_f64(&self) -> Result<Option<f64>, Problem> {
        match self.value {
            Value::Null => Ok(None),
            Value::Number(n) => Ok(n.as_f64()),
            other => Err(self.problem(format!("expected a number, found {}", kind(other)))),
        }
    }

    pub fn opt_bool(&self) -> Result<Option<bool>, Problem> {
        match self.value {
            Value::Null => Ok(None),
            Value::Bool(b) => Ok(Some(*b)),
            other => Err(self.problem(format!("expected true/false, found {}", kind(other)))),
        }
    }
}

fn is_identifier(key: &str) -> bool {
    !key.is_empty()
        && key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        && !key.starts_with(|c: char| c.is_ascii_digit())
}

/// A short name of a JSON value's type for messages.
pub fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_name_keys_and_indices() {
        let v: Value = serde_json::json!({"messages": [{"content": 1}], "odd key": 2});
        let root = Node::root(&v);
        let msgs = root.require("messages").unwrap().items().unwrap();
        let p = msgs[0].require("content").unwrap().str().unwrap_err();
        assert_eq!(p.place, "$.messages[0].content: ");
        assert_eq!(p.message, "expected a string, found a number");
        assert_eq!(root.get("odd key").unwrap().path(), "$[\"odd key\"]");
        let missing = msgs[0].require("role").unwrap_err();
        assert_eq!(missing.place, "$.messages[0]: ");
        assert_eq!(missing.message, "missing field \"role\"");
    }

    #[test]
    fn syntax_errors_have_line_and_column() {
        let p = parse("{\n  \"a\": 1,\n  \"b\": }").unwrap_err();
        assert_eq!(p.place, "line 3, column 8: ");
        assert!(p.message.contains("expected value"), "{}", p.message);
    }
}
