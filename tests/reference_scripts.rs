//! The reference scripts run in forks of one Python per venv (tests/common/forkserver.rs): a
//! script must see what `python SCRIPT ARG...` would show it, and its ending must reach the test.

mod common;

use common::forkserver;
use common::{reference_script, venv_python, without_set_up};

fn probe(args: &[&str]) -> forkserver::Ran {
    forkserver::run(
        &venv_python(),
        &reference_script("forkserver_probe.py"),
        args,
    )
    .expect("the reference venv's forkserver starts")
}

#[test]
fn a_script_gets_its_arguments_its_folder_on_the_path_and_an_empty_stdin() {
    if without_set_up() {
        return;
    }
    let ran = probe(&["print", "two words", "--flag"]);
    assert_eq!(ran.status, Some(0));
    let folder = reference_script("forkserver_probe.py");
    let folder = folder.parent().unwrap().display();
    assert_eq!(
        String::from_utf8(ran.stdout).unwrap(),
        format!("two words --flag\n{folder}\nstdin empty\n")
    );
}

#[test]
fn exit_statuses_messages_exceptions_and_signals_reach_the_test() {
    if without_set_up() {
        return;
    }
    assert_eq!(probe(&["exit", "3"]).status, Some(3));
    let said = probe(&["say", "no such model"]);
    assert_eq!(said.status, Some(1));
    assert_eq!(String::from_utf8_lossy(&said.stderr), "no such model\n");
    let raised = probe(&["raise"]);
    assert_eq!(raised.status, Some(1));
    assert!(
        String::from_utf8_lossy(&raised.stderr).contains("ValueError: raised by forkserver_probe"),
        "{}",
        String::from_utf8_lossy(&raised.stderr)
    );
    // Killed: the signal, negated, and the next script still runs.
    assert_eq!(probe(&["die"]).status, Some(-9));
    assert_eq!(probe(&["exit", "0"]).status, Some(0));
}

#[test]
fn what_one_script_imported_is_loaded_before_the_next_one_starts() {
    if without_set_up() {
        return;
    }
    let first = probe(&["import"]);
    let second = probe(&["import"]);
    assert_eq!(String::from_utf8(first.stdout).unwrap(), "not loaded\n");
    assert_eq!(
        String::from_utf8(second.stdout).unwrap(),
        "loaded already\n"
    );
}
