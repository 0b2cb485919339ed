//! Readiness and event objects: epoll, eventfd, timerfd, signalfd, and
//! interval/POSIX timers.
