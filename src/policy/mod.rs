//! Who may connect: the password file of `[auth] password_file` and `ferry passwd`.

pub mod passwd;
pub mod passwd_cli;
