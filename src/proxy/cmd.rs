//! placeholder: replaced by the proxy commands.
/// `tinylet proxy`.
pub fn proxy_main(_args: &[String]) -> i32 {
    1
}
/// `tinylet ipvs`.
pub fn ipvs_main(_args: &[String]) -> i32 {
    1
}
