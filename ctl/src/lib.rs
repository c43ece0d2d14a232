//! ferroplane's control protocol: one JSON request per line, one JSON reply per line, over a Unix
//! socket. The full protocol and `fpctl` arrive with the control socket issue.
