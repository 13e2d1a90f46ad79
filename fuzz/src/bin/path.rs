//! AFL++ target: `estgate::fuzzing::path` (see that function for what it feeds and checks).
fn main() {
    afl::fuzz!(|data: &[u8]| {
        estgate::fuzzing::path(data);
    });
}
