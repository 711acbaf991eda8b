//! Entry points of the fuzz targets in `fuzz/`: each target is one call into this module.
