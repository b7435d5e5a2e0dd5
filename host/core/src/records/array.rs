//! Flower's `Array`: a serialized tensor.

use bytes::Bytes;

use crate::error::NpyError;
use crate::npy::{self, NpyElement, NpyHeader};

/// A serialized tensor (Flower's `Array`).
///
/// For `stype` [`Array::NUMPY`], `data` is a complete `.npy` file, as
/// `Array.from_numpy_ndarray` writes it; `dtype` is numpy's dtype name (e.g. `float32`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Array {
    /// numpy's dtype name, e.g. `float32`.
    pub dtype: String,
    /// The tensor's shape (empty for a scalar).
    pub shape: Vec<i32>,
    /// How `data` is serialized; Flower uses [`Array::NUMPY`].
    pub stype: String,
    /// The serialized tensor.
    pub data: Bytes,
}

impl Array {
    /// The `stype` of `.npy` data (Flower's `SType.NUMPY`).
    pub const NUMPY: &'static str = "numpy.ndarray";

    /// Builds a numpy Array from C-ordered `values` of the given shape.
    pub fn from_values<T: NpyElement>(values: &[T], shape: &[usize]) -> Result<Self, NpyError> {
        let dims = shape
            .iter()
            .map(|&d| i32::try_from(d))
            .collect::<Result<Vec<i32>, _>>()
            .map_err(|_| NpyError::ShapeTooLarge(shape.to_vec()))?;
        Ok(Array {
            dtype: T::DTYPE.to_owned(),
            shape: dims,
            stype: Self::NUMPY.to_owned(),
            data: Bytes::from(npy::encode_values(values, shape)?),
        })
    }

    /// A `float32` array.
    pub fn from_f32(values: &[f32], shape: &[usize]) -> Result<Self, NpyError> {
        Self::from_values(values, shape)
    }

    /// A `float64` array.
    pub fn from_f64(values: &[f64], shape: &[usize]) -> Result<Self, NpyError> {
        Self::from_values(values, shape)
    }

    /// An `int64` array.
    pub fn from_i64(values: &[i64], shape: &[usize]) -> Result<Self, NpyError> {
        Self::from_values(values, shape)
    }

    /// The parsed `.npy` header of `data`.
    pub fn npy_header(&self) -> Result<NpyHeader, NpyError> {
        self.check_numpy()?;
        npy::parse(&self.data).map(|(header, _)| header)
    }

    /// The elements in C order; errors unless the `.npy` dtype is `T`.
    pub fn to_values<T: NpyElement>(&self) -> Result<Vec<T>, NpyError> {
        self.check_numpy()?;
        npy::decode_values(&self.data)
    }

    /// The elements of a `float32` array.
    pub fn to_f32(&self) -> Result<Vec<f32>, NpyError> {
        self.to_values()
    }

    /// The elements of a `float64` array.
    pub fn to_f64(&self) -> Result<Vec<f64>, NpyError> {
        self.to_values()
    }

    /// The elements of an `int64` array.
    pub fn to_i64(&self) -> Result<Vec<i64>, NpyError> {
        self.to_values()
    }

    fn check_numpy(&self) -> Result<(), NpyError> {
        if self.stype == Self::NUMPY {
            return Ok(());
        }
        Err(NpyError::NotNumpy(self.stype.clone()))
    }
}
