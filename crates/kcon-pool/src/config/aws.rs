//! `sasl.oauthbearer.method=aws_msk_iam`'s settings (`sasl.aws.*`): which region the token is
//! signed for, and which profile of AWS's configuration gives the credentials.

/// The AWS settings of `aws_msk_iam`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AwsConfig {
    /// `sasl.aws.region`: the MSK cluster's region. `None`: the region in the bootstrap
    /// servers' MSK host names, else AWS's configured region.
    pub region: Option<String>,
    /// `sasl.aws.profile`: the profile of AWS's configuration and credentials files. `None`:
    /// `AWS_PROFILE`, else `default`.
    pub profile: Option<String>,
    /// `sasl.aws.role.arn`: a role to assume (STS AssumeRole) with the chain's credentials;
    /// the token is signed with the role's.
    pub role_arn: Option<String>,
    /// `sasl.aws.role.session.name`: the assumed role's session name. `None`: AWS's default.
    pub role_session_name: Option<String>,
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
        if let Some(r) = &self.role_arn {
            set.push(("sasl.aws.role.arn", r.clone()));
        }
        if let Some(n) = &self.role_session_name {
            set.push(("sasl.aws.role.session.name", n.clone()));
        }
        set
    }
}
