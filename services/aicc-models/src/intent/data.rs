//! Labelled utterances from CSV. The parser is aicc-core's (the API's import
//! uses it too); this adds reading a file.

use std::path::Path;

pub use aicc_core::intent_data::*;

pub fn load(path: &Path, rules: Rules) -> Result<Vec<Example>, DataError> {
    let file = path.display().to_string();
    let bytes = std::fs::read(path)
        .map_err(|e| DataError { file: file.clone(), problems: vec![Problem { line: None, message: format!("cannot read: {e}") }] })?;
    parse(&bytes, &file, rules)
}
