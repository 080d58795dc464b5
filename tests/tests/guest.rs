//! Tests that need a kernel of their own: a QEMU guest (tests/guest) with
//! cgroup v2 and every controller, where an unprivileged user owns a
//! delegated subtree — which these build machines do not have.

use burrow_tests::*;

#[test]
fn the_guest_runs_burrow_as_a_user_with_a_delegated_cgroup() {
    let Some(out) = in_guest(
        "id -u\n\
         cat /proc/self/cgroup\n\
         cat /sys/fs/cgroup/cgroup.controllers\n\
         stat -c %U /sys/fs/cgroup/user.slice\n\
         burrow run --read-only --map-users none -- sh -c 'echo inside as $(id -u)'\n",
    ) else {
        return;
    };
    assert_eq!(
        out.ok(),
        "1000\n0::/user.slice/session\ncpuset cpu io memory hugetlb pids rdma misc\nuser\ninside as 0\n"
    );
}
