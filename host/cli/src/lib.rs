//! The sepal command-line tool
