//! Compression codecs of record batches, every decompression bounded by a cap.
