//! `warpnet::data::npy::parse` on one `.npy` file.
//!
//! `npy::parse` returns an `NpyError`, a phrase that its caller (the npz reader) turns into an input error
//! naming the file and the array; here the phrase itself must be one non-empty line. A parsed array must
//! hold exactly the data bytes its shape and dtype call for.
#![no_main]

use libfuzzer_sys::fuzz_target;
use warpnet::data::npy;
use warpnet_fuzz::assert_one_line;

fuzz_target!(|data: &[u8]| {
    match npy::parse(data.to_vec()) {
        Ok(array) => {
            let elements = array.shape.iter().try_fold(1usize, |acc, &dim| acc.checked_mul(dim));
            let elements = elements.expect("npy: Ok for a shape whose element count overflows");
            let _ = array.shape_text();
            if let Some(ty) = npy::int_type(&array.descr) {
                assert_eq!(array.data.len(), elements * ty.bytes, "npy: data length disagrees with shape");
                let values = array.to_i64().expect("npy: integer dtype without integer values");
                assert_eq!(values.len(), elements, "npy: value count disagrees with shape");
            } else {
                assert!(array.to_i64().is_none(), "npy: integer values for a non-integer dtype");
            }
        }
        Err(err) => assert_one_line(&err.to_string(), "npy"),
    }
});
