//! Zero-copy, bounds-checked header views over byte slices.
