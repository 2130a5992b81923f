//! `loadgen`: feedline's load generator. The open-loop driver, workload model and reports are
//! built by the loadgen issue; until then this binary states so and exits non-zero.

fn main() {
    eprintln!("loadgen: not implemented yet (see the loadgen issue); nothing was sent");
    std::process::exit(2);
}
