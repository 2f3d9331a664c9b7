//! How the snapshot types write durations: as seconds in a float (`1.5`), the unit
//! Prometheus and most JSON consumers expect, rather than serde's default
//! `{"secs":1,"nanos":500000000}`.

use std::time::Duration;

use serde::ser::SerializeStruct;
use serde::Serializer;

use crate::job::TenantId;

pub(crate) fn secs<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64(d.as_secs_f64())
}

/// `worst_p99_wait`: `{"tenant": "acme", "wait": 0.25}` or `null`.
pub(crate) fn tenant_wait<S: Serializer>(v: &Option<(TenantId, Duration)>, s: S) -> Result<S::Ok, S::Error> {
    match v {
        None => s.serialize_none(),
        Some((tenant, wait)) => {
            let mut st = s.serialize_struct("TenantWait", 2)?;
            st.serialize_field("tenant", tenant.as_str())?;
            st.serialize_field("wait", &wait.as_secs_f64())?;
            st.end()
        }
    }
}
