//! Location properties: a path as the user typed it, made absolute against the working directory
//! at the moment the property is set, as filesrc does.
//!
//! Done when the property is set rather than when the file is opened because an application may
//! change its working directory in between, and because the property then reads back the file that
//! will actually be opened. Nothing here touches the file: a missing one is reported at start, with
//! the property's name.

use std::path::{Path, PathBuf};

/// Said in the blurb of every location property.
const RELATIVE_PATHS: &str = "a relative path is from the working directory";

/// The blurb of a location property: what it names, then how a relative path is read.
pub fn blurb(what: &str) -> String {
    format!("{what}; {RELATIVE_PATHS}")
}

/// `text` as an absolute path; `None` (the property unset) for nothing or an empty string.
pub fn absolute(text: Option<&str>) -> Option<PathBuf> {
    let text = text.filter(|t| !t.is_empty())?;
    let path = Path::new(text);
    // Fails only when the working directory itself is gone; the path then stays as typed and
    // opening it reports the problem.
    Some(std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf()))
}

/// Whether a `model` property names a file rather than a model in the catalog or on a server: a
/// folder in it, or the .onnx extension.
pub fn names_a_file(model: &str) -> bool {
    model.contains('/') || model.ends_with(".onnx")
}

/// A `model` property's value: a file made absolute as [`absolute`] does, a name as it is.
pub fn model(text: Option<&str>) -> Option<PathBuf> {
    match text {
        Some(name) if !name.is_empty() && !names_a_file(name) => Some(PathBuf::from(name)),
        _ => absolute(text),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_relative_path_is_joined_to_the_working_directory() {
        let here = std::env::current_dir().unwrap();
        assert_eq!(
            absolute(Some("models/unet.onnx")),
            Some(here.join("models/unet.onnx"))
        );
        assert_eq!(
            absolute(Some("./speech.wav")),
            Some(here.join("speech.wav"))
        );
        assert_eq!(absolute(Some("a b.png")), Some(here.join("a b.png")));
    }

    #[test]
    fn an_absolute_path_stays_as_it_is() {
        assert_eq!(
            absolute(Some("/srv/media/speech.wav")),
            Some(PathBuf::from("/srv/media/speech.wav"))
        );
    }

    #[test]
    fn a_model_name_stays_a_name_and_a_model_file_is_made_absolute() {
        let here = std::env::current_dir().unwrap();
        assert_eq!(model(Some("u2netp")), Some(PathBuf::from("u2netp")));
        assert_eq!(model(Some("unet")), Some(PathBuf::from("unet")));
        assert_eq!(model(Some("unet.onnx")), Some(here.join("unet.onnx")));
        assert_eq!(model(Some("models/unet")), Some(here.join("models/unet")));
        assert_eq!(model(Some("")), None);
    }

    #[test]
    fn nothing_or_an_empty_string_unsets_the_property() {
        assert_eq!(absolute(None), None);
        assert_eq!(absolute(Some("")), None);
    }
}
