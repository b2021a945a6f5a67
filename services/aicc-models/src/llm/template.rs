//! The chat template: messages → prompt token ids. Both models declare
//! ChatML in `tokenizer.chat_template`; we recognise it and render it in
//! Rust (no Jinja engine), putting the control tokens in by id so that
//! message text can never open or close a turn.

use aicc_core::{ChatMessage, ChatRole};

use super::tokenizer::GgufTokenizer;
use super::LlmError;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChatTemplate {
    /// `<|im_start|>ROLE\nTEXT<|im_end|>\n` … `<|im_start|>assistant\n`.
    ChatMl {
        start: u32,
        end: u32,
        /// The system text the template uses when the request has none.
        default_system: Option<String>,
    },
}

impl ChatTemplate {
    /// Recognises the GGUF's template (ChatML is what our models use).
    pub fn detect(template: Option<&str>, tokenizer: &GgufTokenizer) -> Result<Self, LlmError> {
        let template = template.unwrap_or("");
        let (Some(start), Some(end)) = (tokenizer.control_id("<|im_start|>"), tokenizer.control_id("<|im_end|>")) else {
            return Err(LlmError::Unsupported("chat template: only ChatML (<|im_start|> … <|im_end|>) is supported".into()));
        };
        if !template.is_empty() && !template.contains("<|im_start|>") {
            return Err(LlmError::Unsupported("chat template: the GGUF's template is not ChatML".into()));
        }
        Ok(ChatTemplate::ChatMl { start, end, default_system: default_system(template) })
    }

    /// Token ids of the whole prompt, ending where the assistant's answer begins.
    pub fn render(&self, tokenizer: &GgufTokenizer, messages: &[ChatMessage]) -> Result<Vec<u32>, LlmError> {
        let ChatTemplate::ChatMl { start, end, default_system } = self;
        let mut ids: Vec<u32> = tokenizer.bos_prefix().into_iter().collect();
        let turn = |role: &str, text: &str, ids: &mut Vec<u32>| -> Result<(), LlmError> {
            ids.push(*start);
            ids.extend(tokenizer.encode(&format!("{role}\n{text}"))?);
            ids.push(*end);
            ids.extend(tokenizer.encode("\n")?);
            Ok(())
        };
        if messages.first().is_none_or(|m| m.role != ChatRole::System) {
            if let Some(text) = default_system {
                turn("system", text, &mut ids)?;
            }
        }
        for m in messages {
            turn(m.role.as_str(), &m.content, &mut ids)?;
        }
        ids.push(*start);
        ids.extend(tokenizer.encode("assistant\n")?);
        Ok(ids)
    }
}

/// The literal system text of `…'<|im_start|>system\nTEXT<|im_end|>\n'…` in
/// the template (Qwen: "You are Qwen, created by Alibaba Cloud…").
fn default_system(template: &str) -> Option<String> {
    for newline in ["\\n", "\n"] {
        let open = format!("<|im_start|>system{newline}");
        let mut from = 0;
        while let Some(i) = template[from..].find(&open) {
            let body = &template[from + i + open.len()..];
            let Some(close) = body.find("<|im_end|>") else { break };
            let text = &body[..close];
            // A literal, not an expression such as `' + message['content'] + '`.
            if !text.is_empty() && !text.contains(['{', '}', '\'', '+']) {
                return Some(text.replace("\\n", "\n"));
            }
            from += i + open.len();
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_default_system_text_of_both_templates() {
        let qwen = "{%- else %}\n        {{- '<|im_start|>system\\nYou are Qwen, created by Alibaba Cloud. You are a helpful assistant.<|im_end|>\\n' }}";
        assert_eq!(default_system(qwen).as_deref(), Some("You are Qwen, created by Alibaba Cloud. You are a helpful assistant."));
        let smol = "{% if loop.first and messages[0]['role'] != 'system' %}{{ '<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n' }}{% endif %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}";
        assert_eq!(default_system(smol).as_deref(), Some("You are a helpful AI assistant named SmolLM, trained by Hugging Face"));
        assert_eq!(default_system("{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>'}}"), None);
    }
}
