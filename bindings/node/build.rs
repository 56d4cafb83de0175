//! Link arguments for a Node addon (its Node-API symbols are resolved from the loading process).
fn main() {
    napi_build::setup();
}
