//! Tunnel encapsulation and decapsulation stages over the pipeline's packet model.
//!
//! Empty until the overlay issue lands. The packet model it will build on already reserves
//! [`ferroplane_pipeline::buf::HEADROOM`] bytes in front of every frame so that outer headers are
//! prepended in place.
