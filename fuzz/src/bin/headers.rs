//! AFL++ target: `estgate::fuzzing::headers` (see that function for what it feeds and checks).
fn main() {
    afl::fuzz!(|data: &[u8]| {
        estgate::fuzzing::headers(data);
    });
}
