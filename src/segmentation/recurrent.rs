//! Recurrent matting models, with the interface of Robust Video Matting's ONNX export: the frame
//! (`src`, `[1,3,H,W]` in 0..1), recurrent state (`r1i`..`r4i`) and a `downsample_ratio` (`[1]`)
//! in; the foreground colour (`fgr`), the alpha (`pha`) and the next state (`r1o`..`r4o`) out.
//! The state a frame leaves is fed to the next one, so the model must see every frame of a
//! stream in order, and the state starts afresh (zeros of shape `[1,1,1,1]`) wherever the
//! stream does.
//!
//! The rule that recognises state from the signature: an output that returns an input, named as
//! the input with its last `i` turned to `o` (`r1i` -> `r1o`), or its `in` suffix to `out`
//! (`state_in` -> `state_out`); exports named otherwise name their pairs (`recurrent-state`).
//! Of the other inputs, the one of rank 4 is the frame and one named `downsample_ratio` the
//! ratio; of the other outputs, `pha` or `alpha` (else the first with one channel) is the alpha,
//! `fgr` (else one with three channels) the foreground colour.

use crate::inference::{ShapeDisplay, TensorSpec};

/// Which tensors of a recurrent model are which, by their index in the model's declaration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecurrentSignature {
    /// The frame.
    pub image: usize,
    /// `downsample_ratio`, where the model takes one.
    pub ratio: Option<usize>,
    /// Each state: the input it is fed through and the output that returns it.
    pub states: Vec<(usize, usize)>,
    pub alpha: usize,
    pub foreground: Option<usize>,
}

/// The output named as `input` with its state suffix turned around, if the name has one.
fn returned_name(input: &str) -> Option<String> {
    if let Some(stem) = input.strip_suffix("in") {
        return Some(format!("{stem}out"));
    }
    input.strip_suffix('i').map(|stem| format!("{stem}o"))
}

impl RecurrentSignature {
    /// Recognises a recurrent model from its tensors (see the module's rule), with `named`
    /// (input, output) pairs taking the place of the naming rule when given. `Ok(None)`: the
    /// model has no state. Errors name the tensors and say what was expected.
    pub fn recognise(
        inputs: &[TensorSpec],
        outputs: &[TensorSpec],
        named: &[(String, String)],
    ) -> Result<Option<Self>, String> {
        let input_at = |name: &str| inputs.iter().position(|t| t.name == name);
        let output_at = |name: &str| outputs.iter().position(|t| t.name == name);
        let mut states = Vec::new();
        if named.is_empty() {
            for (i, input) in inputs.iter().enumerate() {
                if let Some(o) = returned_name(&input.name).and_then(|name| output_at(&name)) {
                    states.push((i, o));
                }
            }
        } else {
            for (input, output) in named {
                let i = input_at(input).ok_or_else(|| {
                    format!("recurrent-state names input '{input}', which the model does not have")
                })?;
                let o = output_at(output).ok_or_else(|| {
                    format!(
                        "recurrent-state names output '{output}', which the model does not have"
                    )
                })?;
                states.push((i, o));
            }
        }
        if states.is_empty() {
            return Ok(None);
        }
        for &(i, o) in &states {
            let (input, output) = (&inputs[i], &outputs[o]);
            let ranks_differ = input.shape.len() != output.shape.len();
            // Sizes declared on both sides must agree; dynamic ones are free.
            let sizes_differ = input
                .shape
                .iter()
                .zip(&output.shape)
                .any(|(a, b)| matches!((a, b), (Some(a), Some(b)) if a != b));
            if ranks_differ || sizes_differ || input.element_type != output.element_type {
                return Err(format!(
                    "recurrent state output '{}' ({} {}) does not match the input '{}' ({} {}) \
                     it feeds: a state must come back with the input's type and shape",
                    output.name,
                    output.element_type,
                    ShapeDisplay(&output.shape),
                    input.name,
                    input.element_type,
                    ShapeDisplay(&input.shape)
                ));
            }
        }
        let free_inputs: Vec<usize> = (0..inputs.len())
            .filter(|i| !states.iter().any(|s| s.0 == *i))
            .collect();
        let ratio = free_inputs
            .iter()
            .copied()
            .find(|&i| inputs[i].name == "downsample_ratio");
        let images: Vec<usize> = free_inputs
            .iter()
            .copied()
            .filter(|&i| Some(i) != ratio && inputs[i].shape.len() == 4)
            .collect();
        let [image] = images[..] else {
            return Err(format!(
                "a recurrent model takes one frame input of rank 4 besides its state; found {}",
                describe(inputs, &images)
            ));
        };
        if let Some(other) = free_inputs
            .iter()
            .find(|&&i| i != image && Some(i) != ratio)
        {
            return Err(format!(
                "input '{}' {} is neither the frame, nor 'downsample_ratio', nor a state that \
                 an output returns",
                inputs[*other].name,
                ShapeDisplay(&inputs[*other].shape)
            ));
        }
        if let Some(r) = ratio {
            let shape = &inputs[r].shape;
            if shape.len() > 1 || shape.first().is_some_and(|d| d.is_some_and(|d| d != 1)) {
                return Err(format!(
                    "input 'downsample_ratio' is {}; expected one value ([1])",
                    ShapeDisplay(shape)
                ));
            }
        }
        let free_outputs: Vec<usize> = (0..outputs.len())
            .filter(|o| !states.iter().any(|s| s.1 == *o))
            .collect();
        let channels = |o: usize| outputs[o].shape.get(1).copied().flatten();
        let named_output = |names: &[&str]| {
            free_outputs
                .iter()
                .copied()
                .find(|&o| names.contains(&outputs[o].name.as_str()))
        };
        let alpha = named_output(&["pha", "alpha"])
            .or_else(|| {
                free_outputs
                    .iter()
                    .copied()
                    .find(|&o| channels(o) == Some(1))
            })
            .ok_or_else(|| {
                format!(
                    "a recurrent model needs an alpha output ('pha', or one of shape [1,1,H,W]); \
                     found {}",
                    describe(outputs, &free_outputs)
                )
            })?;
        let foreground = named_output(&["fgr"]).or_else(|| {
            free_outputs
                .iter()
                .copied()
                .find(|&o| o != alpha && channels(o) == Some(3))
        });
        Ok(Some(Self {
            image,
            ratio,
            states,
            alpha,
            foreground,
        }))
    }
}

fn describe(tensors: &[TensorSpec], which: &[usize]) -> String {
    if which.is_empty() {
        return "none".into();
    }
    which
        .iter()
        .map(|&i| format!("'{}' {}", tensors[i].name, ShapeDisplay(&tensors[i].shape)))
        .collect::<Vec<_>>()
        .join(", ")
}

/// `downsample_ratio` for a frame: the property's value, or with `auto` (0) RVM's advice for
/// portraits: 1 up to 512 pixels on the longer side, beyond that the ratio that brings it to 480
/// (0.375 at 720p, 0.25 at 1080p, 0.125 at 4K).
pub fn downsample_ratio(setting: f64, width: usize, height: usize) -> f32 {
    if setting > 0.0 {
        return setting.min(1.0) as f32;
    }
    let longer = width.max(height);
    if longer <= 512 {
        1.0
    } else {
        (480.0 / longer as f64) as f32
    }
}

/// Parses `recurrent-state`: `input:output` pairs separated by commas; empty is none.
pub fn parse_pairs(text: &str) -> Result<Vec<(String, String)>, String> {
    text.split(',')
        .map(str::trim)
        .filter(|pair| !pair.is_empty())
        .map(|pair| match pair.split_once(':') {
            Some((input, output)) if !input.trim().is_empty() && !output.trim().is_empty() => {
                Ok((input.trim().to_string(), output.trim().to_string()))
            }
            _ => Err(format!(
                "'{pair}' is not an input:output pair (e.g. r1i:r1o,r2i:r2o)"
            )),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::inference::ElementType;

    fn spec(name: &str, shape: &[Option<usize>]) -> TensorSpec {
        TensorSpec {
            name: name.into(),
            element_type: ElementType::Float32,
            shape: shape.to_vec(),
        }
    }

    /// RVM's ONNX export, as export_onnx.py declares it.
    fn rvm() -> (Vec<TensorSpec>, Vec<TensorSpec>) {
        let any4 = [None, None, None, None];
        let inputs = vec![
            spec("src", &[None, Some(3), None, None]),
            spec("r1i", &any4),
            spec("r2i", &any4),
            spec("r3i", &any4),
            spec("r4i", &any4),
            spec("downsample_ratio", &[Some(1)]),
        ];
        let outputs = vec![
            spec("fgr", &[None, Some(3), None, None]),
            spec("pha", &[None, Some(1), None, None]),
            spec("r1o", &any4),
            spec("r2o", &any4),
            spec("r3o", &any4),
            spec("r4o", &any4),
        ];
        (inputs, outputs)
    }

    #[test]
    fn rvms_signature_is_recognised_by_its_names() {
        let (inputs, outputs) = rvm();
        let signature = RecurrentSignature::recognise(&inputs, &outputs, &[])
            .unwrap()
            .unwrap();
        assert_eq!(
            signature,
            RecurrentSignature {
                image: 0,
                ratio: Some(5),
                states: vec![(1, 2), (2, 3), (3, 4), (4, 5)],
                alpha: 1,
                foreground: Some(0),
            }
        );
        // A plain segmentation model has no state.
        let plain = RecurrentSignature::recognise(
            &[spec("input.1", &[Some(1), Some(3), Some(320), Some(320)])],
            &[spec("1959", &[Some(1), Some(1), Some(320), Some(320)])],
            &[],
        );
        assert_eq!(plain, Ok(None));
    }

    #[test]
    fn pairs_named_otherwise_are_taken_from_the_property() {
        let inputs = vec![
            spec("image", &[Some(1), Some(3), None, None]),
            spec("memory", &[None, None, None, None]),
        ];
        let outputs = vec![
            spec("matte", &[Some(1), Some(1), None, None]),
            spec("memory_next", &[None, None, None, None]),
        ];
        assert_eq!(
            RecurrentSignature::recognise(&inputs, &outputs, &[]),
            Ok(None)
        );
        let pairs = parse_pairs(" memory:memory_next ").unwrap();
        let signature = RecurrentSignature::recognise(&inputs, &outputs, &pairs)
            .unwrap()
            .unwrap();
        assert_eq!((signature.image, signature.alpha), (0, 0));
        assert_eq!(signature.states, vec![(1, 1)]);
        assert_eq!(signature.ratio, None);
        let error =
            RecurrentSignature::recognise(&inputs, &outputs, &parse_pairs("memory:next").unwrap())
                .unwrap_err();
        assert!(error.contains("output 'next'"), "{error}");
        assert!(parse_pairs("memory").unwrap_err().contains("'memory'"));
    }

    #[test]
    fn mismatched_states_and_stray_inputs_are_refused_by_name() {
        let (mut inputs, outputs) = rvm();
        inputs[3].element_type = ElementType::Float16;
        let error = RecurrentSignature::recognise(&inputs, &outputs, &[]).unwrap_err();
        assert!(
            error.contains("'r3o'") && error.contains("'r3i'"),
            "{error}"
        );

        let (inputs, mut outputs) = rvm();
        outputs[4].shape = vec![None, None];
        let error = RecurrentSignature::recognise(&inputs, &outputs, &[]).unwrap_err();
        assert!(
            error.contains("'r3o'") && error.contains("shape"),
            "{error}"
        );

        let (mut inputs, mut outputs) = rvm();
        inputs[1].shape = vec![Some(1), Some(16), None, None];
        outputs[2].shape = vec![Some(1), Some(8), None, None];
        let error = RecurrentSignature::recognise(&inputs, &outputs, &[]).unwrap_err();
        assert!(
            error.contains("'r1o' (float32 [1,8,?,?])") && error.contains("'r1i'"),
            "{error}"
        );

        let (mut inputs, outputs) = rvm();
        inputs.push(spec("temperature", &[Some(1)]));
        let error = RecurrentSignature::recognise(&inputs, &outputs, &[]).unwrap_err();
        assert!(error.contains("'temperature'"), "{error}");

        let (mut inputs, outputs) = rvm();
        inputs[5].shape = vec![Some(2)];
        let error = RecurrentSignature::recognise(&inputs, &outputs, &[]).unwrap_err();
        assert!(error.contains("'downsample_ratio' is [2]"), "{error}");
    }

    #[test]
    fn auto_ratio_follows_rvms_advice() {
        assert_eq!(downsample_ratio(0.0, 512, 384), 1.0);
        assert_eq!(downsample_ratio(0.0, 640, 480), 0.75);
        assert_eq!(downsample_ratio(0.0, 1280, 720), 0.375);
        assert_eq!(downsample_ratio(0.0, 1920, 1080), 0.25);
        assert_eq!(downsample_ratio(0.0, 3840, 2160), 0.125);
        assert_eq!(downsample_ratio(0.4, 3840, 2160), 0.4);
    }
}
