//! AFL++ target: `estgate::fuzzing::pkcs10` (see that function for what it feeds and checks).
fn main() {
    afl::fuzz!(|data: &[u8]| {
        estgate::fuzzing::pkcs10(data);
    });
}
