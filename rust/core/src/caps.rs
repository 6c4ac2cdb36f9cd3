//! Capabilities as a bitmask over a configured vocabulary.
//!
//! A vocabulary maps names to bit positions, up to [`MAX_CAPABILITIES`]. An unknown name is
//! an error, never a new capability: a typo must not create a skill nobody has.

use rustc_hash::FxHashMap;

use crate::error::{CoreError, CoreResult};

/// A set of capabilities. 128 bits keeps a grid entry at 48 bytes; widen this type (and
/// [`MAX_CAPABILITIES`]) if a deployment ever needs more.
pub type CapSet = u128;

/// How many distinct capabilities a vocabulary can hold.
pub const MAX_CAPABILITIES: usize = CapSet::BITS as usize;

/// The shipped vocabulary (docs/domain.md): skills, kit and common language skills.
pub const DEFAULT_CAPABILITIES: &[&str] = &[
    "firearms",
    "taser",
    "advanced_driver",
    "public_order",
    "dog",
    "first_aid",
    "paramedic",
    "negotiator",
    "roads_policing",
    "firefighting",
    "rescue",
    "hazmat",
    "search",
    "cbrn",
    "water_rescue",
    "marine",
    "air_support",
    "surveillance",
    "forensics",
    "family_liaison",
    "mental_health",
    "lang_polish",
    "lang_romanian",
    "lang_urdu",
    "lang_bengali",
    "lang_arabic",
    "lang_spanish",
    "lang_portuguese",
    "lang_french",
    "lang_turkish",
    "lang_somali",
    "lang_punjabi",
    "lang_gujarati",
    "lang_tamil",
    "lang_italian",
    "lang_lithuanian",
    "lang_bsl",
];

/// The default scarce specialisms: sending one where it is not needed costs.
pub const DEFAULT_SCARCE: &[&str] = &["firearms", "dog", "negotiator", "public_order", "hazmat"];

/// Names ↔ bits.
#[derive(Debug, Clone)]
pub struct Vocabulary {
    names: Vec<String>,
    bits: FxHashMap<String, u32>,
}

impl Vocabulary {
    /// A vocabulary of exactly these names, in order. Duplicates and empty names are errors.
    pub fn new<S: AsRef<str>>(names: &[S]) -> CoreResult<Self> {
        if names.len() > MAX_CAPABILITIES {
            return Err(CoreError::invalid(
                "capabilities",
                format!("{} names given, at most {MAX_CAPABILITIES} are supported", names.len()),
            ));
        }
        let mut vocab = Self { names: Vec::new(), bits: FxHashMap::default() };
        for name in names {
            let name = name.as_ref();
            if name.is_empty() {
                return Err(CoreError::invalid("capabilities", "empty capability name"));
            }
            if vocab.bits.contains_key(name) {
                return Err(CoreError::invalid("capabilities", format!("{name:?} listed twice")));
            }
            vocab.bits.insert(name.to_owned(), vocab.names.len() as u32);
            vocab.names.push(name.to_owned());
        }
        Ok(vocab)
    }

    /// The names, in bit order.
    pub fn names(&self) -> &[String] {
        &self.names
    }

    /// The set holding exactly these names; any unknown name is an error.
    pub fn encode<S: AsRef<str>>(&self, names: &[S]) -> CoreResult<CapSet> {
        names.iter().try_fold(0, |set, name| {
            let name = name.as_ref();
            match self.bits.get(name) {
                Some(&bit) => Ok(set | (1 << bit)),
                None => Err(CoreError::UnknownCapability(name.to_owned())),
            }
        })
    }

    /// The names of the bits set in `set`.
    pub fn decode(&self, set: CapSet) -> Vec<String> {
        (0..self.names.len()).filter(|&bit| set & (1 << bit) != 0).map(|bit| self.names[bit].clone()).collect()
    }
}

impl Default for Vocabulary {
    fn default() -> Self {
        Self::new(DEFAULT_CAPABILITIES).expect("the default vocabulary is valid")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encode_decode_round_trip() {
        let v = Vocabulary::default();
        let set = v.encode(&["dog", "taser"]).unwrap();
        assert_eq!(v.decode(set), vec!["taser".to_string(), "dog".to_string()]);
    }

    #[test]
    fn unknown_name_is_an_error_not_a_new_capability() {
        let v = Vocabulary::default();
        assert_eq!(v.encode(&["tazer"]), Err(CoreError::UnknownCapability("tazer".into())));
        assert_eq!(v.names().len(), DEFAULT_CAPABILITIES.len());
    }

    #[test]
    fn holds_128_capabilities_and_refuses_more() {
        let names: Vec<String> = (0..MAX_CAPABILITIES).map(|i| format!("c{i}")).collect();
        let v = Vocabulary::new(&names).unwrap();
        assert_eq!(v.encode(&["c127"]).unwrap(), 1 << 127);
        let mut too_many = names.clone();
        too_many.push("one_more".into());
        assert!(Vocabulary::new(&too_many).is_err());
    }

    #[test]
    fn duplicates_are_refused() {
        assert!(Vocabulary::new(&["dog", "dog"]).is_err());
    }
}
