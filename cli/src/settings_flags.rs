//! The settings both runtimes read ([`herald_core::settings::SHARED`]) as flags of `herald
//! serve`, each also read from its variable: names, help and defaults come from the core's
//! table, and the values go through its parser, so a flag cannot drift from what the
//! Lambda functions read.

use clap::{Arg, ArgMatches, Args, Command, FromArgMatches};
use herald_core::settings::{Runtime, SettingError, Settings, SHARED};

/// `herald serve`'s shared settings, parsed.
#[derive(Debug, Clone)]
pub struct SharedSettings(pub Settings);

impl FromArgMatches for SharedSettings {
    fn from_arg_matches(matches: &ArgMatches) -> Result<Self, clap::Error> {
        Settings::read(Runtime::Serve, |var| {
            matches.get_one::<String>(var).cloned()
        })
        .map(SharedSettings)
        .map_err(|e| {
            clap::Error::raw(
                clap::error::ErrorKind::ValueValidation,
                format!("{}\n", named_for_serve(&e)),
            )
        })
    }

    fn update_from_arg_matches(&mut self, matches: &ArgMatches) -> Result<(), clap::Error> {
        *self = Self::from_arg_matches(matches)?;
        Ok(())
    }
}

/// A setting's problem named by its flag and its variable, either of which may have set it.
fn named_for_serve(error: &SettingError) -> String {
    match error {
        SettingError::Invalid {
            var,
            value,
            problem,
        } => match SHARED.iter().find(|s| s.var == *var) {
            Some(setting) => format!("--{} ({var}) {value:?}: {problem}", setting.flag),
            None => error.to_string(),
        },
        SettingError::OtherRuntime { .. } => error.to_string(),
    }
}

impl Args for SharedSettings {
    fn augment_args(command: Command) -> Command {
        command.args(SHARED.iter().map(|setting| {
            let help = match setting.default_serve {
                Some(default) => format!("{} [default: {default}]", setting.help),
                None => setting.help.to_string(),
            };
            Arg::new(setting.var)
                .long(setting.flag)
                .env(setting.var)
                .value_name("VALUE")
                .help(help)
        }))
    }

    fn augment_args_for_update(command: Command) -> Command {
        Self::augment_args(command)
    }
}
