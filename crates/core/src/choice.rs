//! Enums chosen by name on the command line and in files, without a CLI library down here:
//! [`choices!`](crate::choices) gives a fieldless enum `FromStr` and `Display` over its names,
//! and the error lists every name, so the binary's argument parser can use them as they are.

/// Implement `FromStr`, `Display` and `NAMES` for a fieldless enum from `(Variant, "name")`
/// pairs.
#[macro_export]
macro_rules! choices {
    ($ty:ty { $($variant:ident => $name:literal),+ $(,)? }) => {
        impl $ty {
            /// Every accepted name, in order.
            pub const NAMES: &'static [&'static str] = &[$($name),+];
            /// The name of this choice.
            pub fn name(&self) -> &'static str {
                match self {
                    $(Self::$variant => $name),+
                }
            }
        }
        impl std::str::FromStr for $ty {
            type Err = String;
            fn from_str(s: &str) -> Result<Self, String> {
                match s.to_ascii_lowercase().as_str() {
                    $($name => Ok(Self::$variant),)+
                    _ => Err(format!(
                        "{s:?} is not one of: {}",
                        Self::NAMES.join(", ")
                    )),
                }
            }
        }
        impl std::fmt::Display for $ty {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.name())
            }
        }
    };
}

#[cfg(test)]
mod tests {
    #[derive(Debug, PartialEq)]
    enum Shape {
        Round,
        Flat,
    }
    crate::choices!(Shape { Round => "round", Flat => "flat-ish" });

    #[test]
    fn names_round_trip_and_errors_list_them() {
        assert_eq!("FLAT-ISH".parse::<Shape>(), Ok(Shape::Flat));
        assert_eq!(Shape::Round.to_string(), "round");
        let err = "square".parse::<Shape>().unwrap_err();
        assert!(err.contains("round, flat-ish"), "{err}");
    }
}
