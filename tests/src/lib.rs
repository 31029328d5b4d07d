//! Cross-crate tests of arcly-stream; the tests live in `tests/tests/`.
