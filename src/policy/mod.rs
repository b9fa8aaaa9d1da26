//! Who may connect: the password file of `[auth] password_file`.

pub mod passwd;
