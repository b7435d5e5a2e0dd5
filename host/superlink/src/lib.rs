//! The SuperLink: link state and the Fleet, ServerAppIo and Exec services
