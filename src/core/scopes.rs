//! Scopes: what an authenticated connection may do (PROTOCOL section 12).
//!
//! Contract:
//! - [`Scopes`] is a set of [`Scope`]s, one bit each; checking one is a mask test.
//! - [`Policy`] is built once per configuration (at start and at each reload) from
//!   `allow_sessions`, `allow_agents`, `allow_route` and `admin_users`; [`Policy::scopes_of`]
//!   costs one hash lookup per list, whatever the lists' lengths.
//! - With `auth_mode = none` the lists are ignored: every connection has
//!   [`Scopes::ALL_BUT_ADMIN`].
//! - A connection's scopes are decided when it authenticates (and again at a reload); the
//!   dispatcher checks the scope of each request before its handler reads the payload.

use std::collections::HashSet;

use crate::config::{AuthMode, Config, EVERY_USER};

/// One scope.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Scope {
    /// Sessions, presence and relays.
    Sessions,
    /// Registering agents and answering routes.
    Agents,
    /// Sending routes and querying agents and devices.
    Route,
    /// Everything, the admin messages, and seeing every user's devices and agent owners.
    Admin,
}

impl Scope {
    /// Every scope.
    pub(crate) const ALL: [Scope; 4] = [Scope::Sessions, Scope::Agents, Scope::Route, Scope::Admin];

    /// The wire name, as `details.scope` and a JWT's `scopes` claim spell it.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Scope::Sessions => "sessions",
            Scope::Agents => "agents",
            Scope::Route => "route",
            Scope::Admin => "admin",
        }
    }

    /// The scope named `name`, spelled exactly.
    pub(crate) fn named(name: &str) -> Option<Scope> {
        Scope::ALL.into_iter().find(|s| s.name() == name)
    }

    fn bit(self) -> u8 {
        1 << self as u8
    }
}

/// A set of scopes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Scopes(u8);

impl Scopes {
    /// No scope.
    pub(crate) const NONE: Scopes = Scopes(0);
    /// `sessions`, `agents` and `route`: what every connection has with `auth_mode = none`.
    pub(crate) const ALL_BUT_ADMIN: Scopes = Scopes(0b0111);

    /// Whether the set allows what `scope` allows (`admin` allows everything).
    pub(crate) fn allows(self, scope: Scope) -> bool {
        self.0 & (scope.bit() | Scope::Admin.bit()) != 0
    }

    /// Whether `admin` is in the set.
    pub(crate) fn is_admin(self) -> bool {
        self.0 & Scope::Admin.bit() != 0
    }

    /// The set with `scope` added.
    #[must_use]
    pub(crate) fn with(self, scope: Scope) -> Scopes {
        Scopes(self.0 | scope.bit())
    }

    /// The scopes named in `names`; unknown names are ignored.
    pub(crate) fn from_names<'a>(names: impl IntoIterator<Item = &'a str>) -> Scopes {
        names
            .into_iter()
            .filter_map(Scope::named)
            .fold(Scopes::NONE, Scopes::with)
    }

    /// The names of the scopes in the set, in [`Scope::ALL`] order.
    pub(crate) fn names(self) -> impl Iterator<Item = &'static str> {
        Scope::ALL
            .into_iter()
            .filter(move |s| self.0 & s.bit() != 0)
            .map(Scope::name)
    }
}

/// Who is granted one scope.
#[derive(Debug)]
enum Granted {
    Everyone,
    Users(HashSet<String>),
}

impl Granted {
    fn of(list: &[String]) -> Granted {
        if list.iter().any(|u| u == EVERY_USER) {
            Granted::Everyone
        } else {
            Granted::Users(list.iter().cloned().collect())
        }
    }

    fn includes(&self, user: &str) -> bool {
        match self {
            Granted::Everyone => true,
            Granted::Users(users) => users.contains(user),
        }
    }
}

/// The configured grants: which scopes each user has.
#[derive(Debug)]
pub(crate) struct Policy {
    /// `None` with `auth_mode = none`.
    grants: Option<[(Scope, Granted); 4]>,
}

impl Policy {
    /// The grants of `config`.
    pub(crate) fn new(config: &Config) -> Policy {
        let grants = (config.auth_mode != AuthMode::None).then(|| {
            [
                (Scope::Sessions, Granted::of(&config.allow_sessions)),
                (Scope::Agents, Granted::of(&config.allow_agents)),
                (Scope::Route, Granted::of(&config.allow_route)),
                (Scope::Admin, Granted::of(&config.admin_users)),
            ]
        });
        Policy { grants }
    }

    /// The scopes of `user` by the configured lists.
    pub(crate) fn scopes_of(&self, user: &str) -> Scopes {
        match &self.grants {
            None => Scopes::ALL_BUT_ADMIN,
            Some(grants) => grants
                .iter()
                .filter(|(_, granted)| granted.includes(user))
                .fold(Scopes::NONE, |set, (scope, _)| set.with(*scope)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn users(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn admin_allows_every_scope_and_names_round_trip() {
        let admin = Scopes::NONE.with(Scope::Admin);
        assert!(Scope::ALL.into_iter().all(|s| admin.allows(s)));
        assert!(admin.is_admin());
        assert!(!Scopes::ALL_BUT_ADMIN.is_admin());
        assert!(!Scopes::NONE.allows(Scope::Route));
        let set = Scopes::from_names(["route", "bogus", "agents", "Route"]);
        assert_eq!(set.names().collect::<Vec<_>>(), ["agents", "route"]);
        assert!(set.allows(Scope::Route) && !set.allows(Scope::Sessions));
    }

    #[test]
    fn the_lists_decide_by_user_and_none_mode_ignores_them() {
        let config = Config {
            allow_sessions: users(&["*"]),
            allow_agents: users(&["svc"]),
            allow_route: users(&[]),
            admin_users: users(&["ops"]),
            ..Config::default()
        };
        let policy = Policy::new(&config);
        let names = |u| policy.scopes_of(u).names().collect::<Vec<_>>();
        assert_eq!(names("alice"), ["sessions"]);
        assert_eq!(names("svc"), ["sessions", "agents"]);
        assert_eq!(names("ops"), ["sessions", "admin"]);
        let open = Policy::new(&Config {
            auth_mode: AuthMode::None,
            ..config
        });
        assert_eq!(open.scopes_of("ops"), Scopes::ALL_BUT_ADMIN);
        let defaults = Policy::new(&Config::default());
        assert_eq!(defaults.scopes_of("anyone"), Scopes::ALL_BUT_ADMIN);
    }
}
