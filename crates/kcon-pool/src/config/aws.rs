//! `sasl.oauthbearer.method=aws_msk_iam`'s settings (`sasl.aws.*`): which region the token is
//! signed for, and which profile of AWS's configuration gives the credentials.

/// The AWS settings of `aws_msk_iam`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AwsConfig {
    /// `sasl.aws.region`: the MSK cluster's region. `None`: AWS's configured region.
    pub region: Option<String>,
    /// `sasl.aws.profile`: the profile of AWS's configuration and credentials files. `None`:
    /// `AWS_PROFILE`, else `default`.
    pub profile: Option<String>,
}

impl AwsConfig {
    /// The settings set: (property, value shown), for the checks that refuse them where they
    /// would be ignored.
    pub(crate) fn set(&self) -> Vec<(&'static str, String)> {
        let mut set = Vec::new();
        if let Some(r) = &self.region {
            set.push(("sasl.aws.region", r.clone()));
        }
        if let Some(p) = &self.profile {
            set.push(("sasl.aws.profile", p.clone()));
        }
        set
    }
}
