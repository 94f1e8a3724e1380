//! What gst-inspect-1.0 shows of the elements' properties: one short line each; the long story
//! is in docs/ and the elements' documentation.

mod common;

use gst::prelude::*;

#[test]
fn every_blurb_is_one_short_line() {
    common::init();
    for factory in ["rembgfilter", "lipsyncsrc", "lipsync"] {
        let element = gst::ElementFactory::make(factory).build().unwrap();
        let mut checked = 0;
        for pspec in element.list_properties() {
            if pspec.owner_type() != element.type_() {
                continue; // GstObject's and the base classes' own
            }
            let blurb = pspec.blurb().unwrap_or_default();
            assert!(
                !blurb.is_empty() && blurb.len() <= 140 && !blurb.contains('\n'),
                "{factory}.{} ({} characters): {blurb}",
                pspec.name(),
                blurb.len()
            );
            checked += 1;
        }
        assert!(
            checked >= 15,
            "{factory}: only {checked} properties of its own"
        );
    }
}
