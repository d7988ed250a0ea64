//! `make bench-policy`: the policy drives simulated hosts (tests/common/sim.rs) through every
//! scenario and prints one row of scores per scenario. The same scenarios are asserted in
//! tests/policy_scenarios.rs.

#[allow(dead_code)]
#[path = "../common/sim.rs"]
mod sim;

fn main() {
    println!("{}", sim::Scores::HEADER);
    for name in sim::SCENARIOS {
        let (mut s, seconds) = sim::scenario(name);
        s.run(seconds);
        println!("{}", s.scores(name).row());
    }
}
