//! Record batches: kcon's own decoder (magic 0, 1 and 2) and encoder (magic 2).
