//! Options chosen by name (kernel, estimator, reduction, audit method): one macro defines the enum,
//! its names and its parser, so that every option parses and fails the same way.

/// `choices! { "what", #[derive(...)] pub enum Name { Variant => "name", ... } }` defines the enum,
/// `Name::name()` and `FromStr`, whose error lists the names in order.
macro_rules! choices {
    (
        $what:literal,
        $(#[$meta:meta])*
        pub enum $name:ident {
            $( $(#[$variant_meta:meta])* $variant:ident => $text:literal ),+ $(,)?
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        pub enum $name {
            $( $(#[$variant_meta])* $variant ),+
        }

        impl $name {
            /// The name this choice is parsed from.
            pub fn name(self) -> &'static str {
                match self {
                    $( Self::$variant => $text ),+
                }
            }
        }

        impl std::str::FromStr for $name {
            type Err = $crate::MmdError;
            fn from_str(text: &str) -> $crate::Result<Self> {
                match text {
                    $( $text => Ok(Self::$variant), )+
                    other => {
                        let expected: Vec<String> =
                            [$( $text ),+].iter().map(|t| format!("{t:?}")).collect();
                        Err($crate::MmdError::InvalidArgument(format!(
                            "unknown {} {other:?}: expected one of {}",
                            $what,
                            expected.join(", ")
                        )))
                    }
                }
            }
        }
    };
}

pub(crate) use choices;
