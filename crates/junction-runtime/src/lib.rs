//! The request pipeline: route table, binding and validation, upstream requests.
