//! The marketplace's closed vocabularies: kinds of organisation and accreditation, technology
//! fields, transfer modes, contract types. One name per concept, used unchanged in events,
//! SQL (`as_str`), GraphQL and exports.

use serde::{Deserialize, Serialize};

/// Declares a closed vocabulary: the enum, its stable snake_case code (`as_str` / `parse`,
/// the spelling stored in SQL) and its Chinese label.
macro_rules! vocabulary {
    ($(#[$doc:meta])* $name:ident { $($(#[$vdoc:meta])* $variant:ident => $code:literal, $zh:literal;)+ }) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(rename_all = "snake_case")]
        pub enum $name {
            $($(#[$vdoc])* $variant,)+
        }

        impl $name {
            pub const ALL: &'static [$name] = &[$($name::$variant,)+];

            /// The stable code stored in SQL and exports.
            pub fn as_str(self) -> &'static str {
                match self { $($name::$variant => $code,)+ }
            }

            /// The Chinese term used in statements.
            pub fn label_zh(self) -> &'static str {
                match self { $($name::$variant => $zh,)+ }
            }

            pub fn parse(code: &str) -> Option<$name> {
                match code { $($code => Some($name::$variant),)+ _ => None }
            }
        }
    };
}

vocabulary!(
    /// What an organisation is.
    OrganisationKind {
        /// 高等院校
        University => "university", "高等院校";
        /// 科研院所
        ResearchInstitute => "research_institute", "科研院所";
        /// 企业
        Enterprise => "enterprise", "企业";
        /// 技术经纪机构 / 技术转移机构
        BrokerAgency => "broker_agency", "技术转移机构";
        /// 知识产权运营中心
        IpOperatingCenter => "ip_operating_center", "知识产权运营中心";
        /// 其他
        Other => "other", "其他";
    }
);

vocabulary!(
    /// The seller kinds of the turnover statistics (DOMAIN.md: university, institute,
    /// enterprise, other).
    SellerKind {
        University => "university", "高等院校";
        ResearchInstitute => "research_institute", "科研院所";
        Enterprise => "enterprise", "企业";
        Other => "other", "其他";
    }
);

impl OrganisationKind {
    pub fn seller_kind(self) -> SellerKind {
        match self {
            OrganisationKind::University => SellerKind::University,
            OrganisationKind::ResearchInstitute => SellerKind::ResearchInstitute,
            OrganisationKind::Enterprise => SellerKind::Enterprise,
            OrganisationKind::BrokerAgency | OrganisationKind::IpOperatingCenter | OrganisationKind::Other => {
                SellerKind::Other
            }
        }
    }
}

vocabulary!(
    /// What an organisation is accredited as, from an effective date (DOMAIN.md eligibility).
    AccreditationKind {
        /// 引进建设的研发机构
        IntroducedRdInstitution => "introduced_rd_institution", "引进研发机构";
        /// 创新平台
        InnovationPlatform => "innovation_platform", "创新平台";
        /// 知识产权运营中心
        IpOperatingCenter => "ip_operating_center", "知识产权运营中心";
    }
);

vocabulary!(
    /// National technology fields of the contract statistics (技术领域).
    TechField {
        /// 电子信息
        ElectronicInformation => "electronic_information", "电子信息";
        /// 先进制造
        AdvancedManufacturing => "advanced_manufacturing", "先进制造";
        /// 城市建设与社会发展
        UrbanDevelopment => "urban_development", "城市建设与社会发展";
        /// 新能源与高效节能
        NewEnergy => "new_energy", "新能源与高效节能";
        /// 环境保护与资源综合利用
        Environment => "environment", "环境保护与资源综合利用";
        /// 生物、医药和医疗器械
        Biomedicine => "biomedicine", "生物、医药和医疗器械";
        /// 新材料及其应用
        NewMaterials => "new_materials", "新材料及其应用";
        /// 现代交通
        ModernTransport => "modern_transport", "现代交通";
        /// 航空航天
        Aerospace => "aerospace", "航空航天";
        /// 农业
        Agriculture => "agriculture", "农业";
        /// 核应用
        NuclearApplication => "nuclear_application", "核应用";
    }
);

vocabulary!(
    /// How an achievement's owner is willing to transfer it (合作方式).
    TransferMode {
        /// 转让
        Transfer => "transfer", "转让";
        /// 许可
        Licence => "licence", "许可";
        /// 合作开发
        JointDevelopment => "joint_development", "合作开发";
        /// 作价入股
        EquityInvestment => "equity_investment", "作价入股";
        /// 技术服务
        TechnicalService => "technical_service", "技术服务";
    }
);

vocabulary!(
    /// Technology contract types (Civil Code, 2021).
    ContractType {
        /// 技术开发
        Development => "development", "技术开发";
        /// 技术转让
        Transfer => "transfer", "技术转让";
        /// 技术许可
        Licence => "licence", "技术许可";
        /// 技术咨询
        Consulting => "consulting", "技术咨询";
        /// 技术服务
        Service => "service", "技术服务";
    }
);

vocabulary!(
    /// The two parties who answer a broker's match.
    MatchSide {
        /// The achievement's owner (成果方).
        Owner => "owner", "成果方";
        /// The demand's enterprise (需求方).
        Enterprise => "enterprise", "需求方";
    }
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_code_parses_back_to_its_variant() {
        for k in OrganisationKind::ALL {
            assert_eq!(OrganisationKind::parse(k.as_str()), Some(*k));
        }
        for f in TechField::ALL {
            assert_eq!(TechField::parse(f.as_str()), Some(*f));
            assert_eq!(serde_json::to_value(f).unwrap(), serde_json::json!(f.as_str()));
        }
        for t in ContractType::ALL {
            assert_eq!(ContractType::parse(t.as_str()), Some(*t));
        }
        assert_eq!(ContractType::parse("lease"), None);
    }
}
