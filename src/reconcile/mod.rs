//! Pod lifecycle engine: desired + observed + clock -> actions (sans-I/O).
