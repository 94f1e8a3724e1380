//! Float16 tensors for models exported with float16 inputs and outputs (e.g. by
//! `onnxconverter_common.float16` without `keep_io_types`): the elements work in float32, the
//! local runtimes convert at the model's edge.

use half::f16;
use half::slice::HalfFloatSliceExt;

/// `values` rounded to the nearest float16; beyond ±65504 they become infinite, as a float16
/// model's own cast would make them.
pub fn to_f16(values: &[f32]) -> Vec<f16> {
    let mut halves = vec![f16::ZERO; values.len()];
    write_f16(values, &mut halves);
    halves
}

/// As [`to_f16`], into a buffer of the same length (a runtime's own tensor).
pub fn write_f16(values: &[f32], halves: &mut [f16]) {
    halves.convert_from_f32_slice(values);
}

/// `halves` widened to float32 (exact).
pub fn to_f32(halves: &[f16]) -> Vec<f32> {
    let mut values = vec![0.0; halves.len()];
    halves.convert_to_f32_slice(&mut values);
    values
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn image_values_survive_the_round_trip_within_float16_precision() {
        // Normalised pixels (ImageNet statistics give about -2.1..2.6) and mask values.
        let values: Vec<f32> = (0..=255)
            .map(|level| (level as f32 / 255.0 - 0.485) / 0.229)
            .chain([0.0, 1.0, -1.0, 0.5, 1e-3])
            .collect();
        let back = to_f32(&to_f16(&values));
        for (value, back) in values.iter().zip(&back) {
            // float16 keeps 11 significant bits.
            assert!(
                (value - back).abs() <= value.abs() / 2048.0,
                "{value} -> {back}"
            );
        }
        assert_eq!(to_f32(&to_f16(&[0.5, 1.0, -2.0])), [0.5, 1.0, -2.0]);
    }

    #[test]
    fn values_beyond_float16_become_infinite_and_nan_stays_nan() {
        let back = to_f32(&to_f16(&[1e6, -1e6, f32::NAN, 65504.0]));
        assert_eq!(back[0], f32::INFINITY);
        assert_eq!(back[1], f32::NEG_INFINITY);
        assert!(back[2].is_nan());
        assert_eq!(back[3], 65504.0);
    }
}
