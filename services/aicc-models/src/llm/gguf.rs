//! Reading a GGUF file's metadata: typed lookups with errors that name the key.

use std::collections::HashMap;

use candle_core::quantized::gguf_file::{Content, Value};

use super::LlmError;

pub struct Meta<'a> {
    pub(crate) map: &'a HashMap<String, Value>,
}

impl<'a> Meta<'a> {
    pub fn new(content: &'a Content) -> Self {
        Self { map: &content.metadata }
    }

    fn get(&self, key: &str) -> Result<&'a Value, LlmError> {
        self.map.get(key).ok_or_else(|| LlmError::Format(format!("GGUF metadata has no `{key}`")))
    }

    pub fn has(&self, key: &str) -> bool {
        self.map.contains_key(key)
    }

    pub fn string(&self, key: &str) -> Result<&'a str, LlmError> {
        match self.get(key)? {
            Value::String(s) => Ok(s),
            other => Err(LlmError::Format(format!("`{key}` is not a string: {other:?}"))),
        }
    }

    pub fn opt_string(&self, key: &str) -> Option<&'a str> {
        self.string(key).ok()
    }

    pub fn u32(&self, key: &str) -> Result<u32, LlmError> {
        as_u64(self.get(key)?).map(|v| v as u32).ok_or_else(|| LlmError::Format(format!("`{key}` is not an integer")))
    }

    pub fn opt_u32(&self, key: &str) -> Option<u32> {
        self.map.get(key).and_then(as_u64).map(|v| v as u32)
    }

    pub fn f32(&self, key: &str) -> Result<f32, LlmError> {
        match self.get(key)? {
            Value::F32(v) => Ok(*v),
            Value::F64(v) => Ok(*v as f32),
            other => as_u64(other).map(|v| v as f32).ok_or_else(|| LlmError::Format(format!("`{key}` is not a number"))),
        }
    }

    pub fn opt_bool(&self, key: &str) -> Option<bool> {
        match self.map.get(key)? {
            Value::Bool(b) => Some(*b),
            _ => None,
        }
    }

    pub fn strings(&self, key: &str) -> Result<Vec<&'a str>, LlmError> {
        match self.get(key)? {
            Value::Array(items) => items
                .iter()
                .map(|v| match v {
                    Value::String(s) => Ok(s.as_str()),
                    other => Err(LlmError::Format(format!("`{key}` holds a non-string: {other:?}"))),
                })
                .collect(),
            other => Err(LlmError::Format(format!("`{key}` is not an array: {other:?}"))),
        }
    }

    pub fn u32s(&self, key: &str) -> Result<Vec<u32>, LlmError> {
        match self.get(key)? {
            Value::Array(items) => items
                .iter()
                .map(|v| as_u64(v).map(|v| v as u32).ok_or_else(|| LlmError::Format(format!("`{key}` holds a non-integer"))))
                .collect(),
            other => Err(LlmError::Format(format!("`{key}` is not an array: {other:?}"))),
        }
    }
}

fn as_u64(v: &Value) -> Option<u64> {
    Some(match v {
        Value::U8(v) => *v as u64,
        Value::I8(v) => *v as u64,
        Value::U16(v) => *v as u64,
        Value::I16(v) => *v as u64,
        Value::U32(v) => *v as u64,
        Value::I32(v) => *v as u64,
        Value::U64(v) => *v,
        Value::I64(v) => *v as u64,
        _ => return None,
    })
}
