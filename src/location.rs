//! Location properties: a path as the user typed it, made absolute against the working directory
//! at the moment the property is set, as filesrc does.
//!
//! Done when the property is set rather than when the file is opened because an application may
//! change its working directory in between, and because the property then reads back the file that
//! will actually be opened. Nothing here touches the file: a missing one is reported at start, with
//! the property's name.

use std::path::{Path, PathBuf};

/// Said in the blurb of every location property.
pub const RELATIVE_PATHS: &str = "a relative path is taken from the working directory when set";

/// `text` as an absolute path; `None` (the property unset) for nothing or an empty string.
pub fn absolute(text: Option<&str>) -> Option<PathBuf> {
    let text = text.filter(|t| !t.is_empty())?;
    let path = Path::new(text);
    // Fails only when the working directory itself is gone; the path then stays as typed and
    // opening it reports the problem.
    Some(std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf()))
}

/// `text` as [`absolute`] makes it, as a string (for properties that also take names).
pub fn absolute_text(text: &str) -> String {
    absolute(Some(text))
        .map(|path| path.display().to_string())
        .unwrap_or_default()
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
        assert_eq!(
            absolute_text("a b.png"),
            here.join("a b.png").display().to_string()
        );
    }

    #[test]
    fn an_absolute_path_stays_as_it_is() {
        assert_eq!(
            absolute(Some("/srv/media/speech.wav")),
            Some(PathBuf::from("/srv/media/speech.wav"))
        );
    }

    #[test]
    fn nothing_or_an_empty_string_unsets_the_property() {
        assert_eq!(absolute(None), None);
        assert_eq!(absolute(Some("")), None);
        assert_eq!(absolute_text(""), "");
    }
}
