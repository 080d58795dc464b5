//! Userspace networking for burrow's network namespaces. Built out in the
//! netstack issue.
