//! Command line parsing.
