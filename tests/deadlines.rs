//! The core forgets the deadlines of jobs that ended (issue 9): a finished job's wait
//! timeout and lease are not kept until they would have fallen due, so memory follows
//! the jobs alive, not the jobs of the last lease's length, and no wake-up is scheduled
//! for a deadline that can no longer fire.

use std::time::Duration;

use weir::{Config, Event, JobSpec, OutcomeKind, Scheduler};

fn config() -> Config {
    let mut config = Config::default();
    config.scheduler.max_concurrent = 10;
    config.scheduler.max_queued = 10_000;
    config.scheduler.slot_wait_timeout = Duration::from_secs(3600);
    config
}

#[test]
fn ended_jobs_leave_no_deadline_behind() {
    let mut core: Scheduler<u32> = Scheduler::new(config());
    let mut events = Vec::new();
    let mut now = Duration::ZERO;
    for i in 0..1_000 {
        core.submit(JobSpec::new(format!("t{}", i % 7), "store"), i, now);
    }
    let mut ended = 0;
    loop {
        core.poll(now, &mut events);
        if events.is_empty() {
            break;
        }
        for event in events.drain(..) {
            let Event::Granted { key, .. } = event else {
                panic!("only grants expected, got {event:?}")
            };
            core.complete(key, OutcomeKind::Completed, now).unwrap();
            ended += 1;
        }
        now += Duration::from_millis(1);
    }
    assert_eq!(ended, 1_000);
    core.poll(now, &mut events);
    assert_eq!(core.live_jobs(), 0);
    // Before: the last job's lease (about a minute away) and wait timeout (an hour away)
    // were still pending, and every finished job's with them.
    assert_eq!(core.next_deadline(), None);
}

#[test]
fn a_running_jobs_lease_still_expires() {
    let mut core: Scheduler<u32> = Scheduler::new(config());
    let mut events = Vec::new();
    let lease = Duration::from_secs(5);
    let hung = core.submit(JobSpec::new("a", "store").lease(lease), 0, Duration::ZERO);
    core.poll(Duration::ZERO, &mut events);
    assert!(matches!(events.pop(), Some(Event::Granted { key, .. }) if key == hung));
    // Jobs granted and ended after it: their deadlines go, the hung job's stays.
    for i in 1..100 {
        let now = Duration::from_millis(i);
        let key = core.submit(JobSpec::new("b", "store").lease(lease), 0, now);
        core.poll(now, &mut events);
        assert!(matches!(events.pop(), Some(Event::Granted { .. })));
        core.complete(key, OutcomeKind::Completed, now).unwrap();
        core.poll(now, &mut events);
        assert!(events.is_empty());
    }
    assert_eq!(core.next_deadline(), Some(lease));
    core.poll(lease, &mut events);
    assert!(matches!(events.pop(), Some(Event::LeaseExpired { key }) if key == hung));
}
