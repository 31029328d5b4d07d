//! arcly-rtmp: RTMP server and client sessions as sans-IO state machines.
